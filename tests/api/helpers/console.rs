//! The operator console from a test: an app with console users, and a cookie-keeping client
//! that reads forms' hidden fields out of the HTML like a browser would submit them.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version, password_hash::SaltString};
use reqwest::{StatusCode, header};

use super::{TestApp, TestAppBuilder};

pub const CONSOLE_SECRET: &str = "console-test-secret-0123456789abcdef";
pub const PASSWORD: &str = "correct horse battery staple";

/// An argon2id hash with a low cost, so debug-built tests sign in quickly (the cost is in the
/// hash: the service verifies with the parameters it names).
pub fn cheap_hash(password: &str) -> String {
    let params = Params::new(64, 1, 1, None).expect("valid argon2 parameters");
    let salt = SaltString::encode_b64(b"console-test-salt").expect("valid salt");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

/// The app with `alice` (operator) and `victor` (viewer), both with `PASSWORD`.
pub fn console_app() -> TestAppBuilder {
    let hash = cheap_hash(PASSWORD);
    TestApp::builder()
        .env(
            "CONSOLE_USERS",
            &format!("alice:operator:{hash};victor:viewer:{hash}"),
        )
        .env("CONSOLE_SESSION_SECRET", CONSOLE_SECRET)
}

/// A client that keeps the console cookie and never follows redirects.
pub struct ConsoleClient {
    http: reqwest::Client,
    base: String,
    pub cookie: Option<String>,
}

/// An answer: status, where it redirects, the cookie it sets, the body.
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookie: Option<String>,
    pub body: String,
}

impl ConsoleClient {
    pub fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: format!("http://{}", app.http_addr),
            cookie: None,
        }
    }

    async fn answer(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let request = match &self.cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        };
        let response = request.send().await.expect("console answers");
        let text = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (location, set_cookie) = (text(header::LOCATION), text(header::SET_COOKIE));
        if let Some(set) = &set_cookie {
            let pair = set.split(';').next().unwrap_or_default().to_owned();
            self.cookie = if pair.ends_with('=') { None } else { Some(pair) };
        }
        Answer {
            status: response.status(),
            location,
            set_cookie,
            body: response.text().await.expect("body"),
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let request = self.http.get(format!("{}{path}", self.base));
        self.answer(request).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let request = self.http.post(format!("{}{path}", self.base)).form(form);
        self.answer(request).await
    }

    /// Opens the sign-in page (its cookie and token), then signs in.
    pub async fn sign_in(&mut self, user: &str, password: &str) -> Answer {
        let page = self.get("/console/sign-in").await.body;
        let csrf = field_after(&page, "/console/sign-in", "csrf");
        self.post(
            "/console/sign-in",
            &[("user", user), ("password", password), ("csrf", &csrf)],
        )
        .await
    }
}

/// The value of the first `name="<field>"` input at or after `from` in `html`.
pub fn field_after(html: &str, from: &str, field: &str) -> String {
    let start = html
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} is not on the page"));
    let marker = format!("name=\"{field}\" value=\"");
    let at = html[start..]
        .find(&marker)
        .unwrap_or_else(|| panic!("no {field} field after {from:?}"))
        + start
        + marker.len();
    html[at..].split('"').next().unwrap_or_default().to_owned()
}
