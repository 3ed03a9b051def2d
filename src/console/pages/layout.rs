//! The shell every console page shares (head, navigation, who is signed in, sign-out), the
//! sign-in and error pages, and small formatting helpers. maud escapes every value.

use axum::{http::StatusCode, response::Html};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use crate::console::session::Session;

/// Who a page is rendered for: the user and the CSRF token its forms carry.
pub(crate) struct Viewer<'a> {
    pub session: &'a Session,
    pub csrf: String,
}

impl Viewer<'_> {
    /// Whether the user may act (forms of actions are shown only then).
    pub(crate) fn operator(&self) -> bool {
        self.session.role == crate::config::ConsoleRole::Operator
    }

    /// The hidden CSRF field every form carries.
    pub(crate) fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · credits console" }
            link rel="stylesheet" href="/console/static/console.css";
        }
    }
}

/// A page for a signed-in user.
pub(crate) fn page(viewer: &Viewer<'_>, title: &str, body: Markup) -> Html<String> {
    document(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/console/search" { "credits console" }
                    nav {
                        a href="/console/search" { "Search" }
                        a href="/console/events" { "Stripe events" }
                        a href="/console/notifications" { "Notifications" }
                        a href="/console/audit" { "Audit log" }
                    }
                    div.who {
                        span.user { (viewer.session.user) }
                        span class={ "role " (viewer.session.role.as_str()) } { (viewer.session.role.as_str()) }
                        form method="post" action="/console/sign-out" {
                            (viewer.csrf_field())
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    })
}

/// The sign-in page; `passwords` false when only the trusted proxy header signs people in.
pub(crate) fn sign_in(passwords: bool, csrf: &str, error: Option<&str>) -> Html<String> {
    document(html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body.center {
                main.card {
                    h1 { "credits console" }
                    @if let Some(error) = error { p.error role="alert" { (error) } }
                    @if passwords {
                        form method="post" action="/console/sign-in" {
                            input type="hidden" name="csrf" value=(csrf);
                            label { "Name" input name="user" autocomplete="username" required autofocus; }
                            label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                            button type="submit" { "Sign in" }
                        }
                    } @else {
                        p { "Sign in through your organisation's proxy." }
                    }
                }
            }
        }
    })
}

/// An error page: the status and a line saying what to do.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Html<String> {
    document(html! {
        (DOCTYPE)
        html lang="en" {
            (head(status.canonical_reason().unwrap_or("Error")))
            body.center {
                main.card {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p.error role="alert" { (message) }
                    p { a href="/console/search" { "Back to the console" } }
                }
            }
        }
    })
}

/// A whole HTML document as an axum answer.
fn document(markup: Markup) -> Html<String> {
    Html(markup.into_string())
}

/// A time as operators read it, in UTC; `—` for none.
pub(crate) fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "—".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// A notice above a page's content, from `?done=` after an action.
pub(crate) fn notice(done: Option<&str>) -> Markup {
    html! { @if let Some(done) = done { p.notice role="status" { (done) } } }
}

/// A path segment, percent-encoded (account ids are free-form).
pub(crate) fn segment(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

/// The path of an account's page.
pub(crate) fn account_path(account_id: &str) -> String {
    format!("/console/accounts/{}", segment(account_id))
}
