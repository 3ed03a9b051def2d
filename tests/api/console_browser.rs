//! The console in a real browser: Debian's chromium, driven through chromedriver (started
//! here on a free port) with fantoccini. Signs in, searches, grants with a reason, sees the
//! entry and the audit line, meets a CSRF and a role refusal, signs out, and saves screenshots
//! of the main pages (into `target/console-screenshots/`; `CONSOLE_SCREENSHOTS=docs/console`
//! refreshes the README's). Without chromedriver it fails, saying what to install.

use std::{path::PathBuf, process::Stdio, time::Duration};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::helpers::{
    TestApp,
    console::{PASSWORD, console_app},
    fixture,
};

/// chromedriver, from PATH or where Debian puts it.
fn chromedriver() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromedriver"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/chromedriver")])
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed; the console's browser test needs it: \
                 apt-get install chromium chromium-driver"
            )
        })
}

/// A browser session and the chromedriver behind it (killed on drop).
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
    base: String,
}

impl Browser {
    async fn start(app: &TestApp) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = tokio::process::Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1100", "--hide-scrollbars"],
        });
        if std::path::Path::new("/usr/bin/chromium").is_file() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Self {
                        client,
                        _driver: driver,
                        base: format!("http://{}", app.http_addr),
                    };
                }
                Err(err) => last = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start a browser: {last:?}");
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("navigate");
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.find(Locator::Css(css)).await.expect(css);
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Clicks and waits for the next page to show `css`.
    async fn click_then(&self, button: &str, css: &str) {
        self.client
            .find(Locator::Css(button))
            .await
            .expect(button)
            .click()
            .await
            .expect("click");
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("{css} after clicking {button}: {err}"));
    }

    async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .expect("body")
            .text()
            .await
            .expect("text")
    }

    async fn path(&self) -> String {
        self.client.current_url().await.expect("url").path().to_owned()
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        // The committed ones are refreshed on purpose (`CONSOLE_SCREENSHOTS=docs/console`), not
        // by every test run.
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
            std::env::var("CONSOLE_SCREENSHOTS").unwrap_or_else(|_| "target/console-screenshots".into()),
        );
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn sign_in(&self, user: &str) {
        self.goto("/console/sign-in").await;
        self.fill("input[name=user]", user).await;
        self.fill("input[name=password]", PASSWORD).await;
        self.click_then("main.card button[type=submit]", "form.search")
            .await;
    }
}

#[tokio::test]
async fn the_console_works_in_a_real_browser() {
    let app = console_app().spawn().await;
    app.ensure_with("acct_browser", "ada@example.com")
        .await
        .expect("account");
    app.grant("acct_browser", 1000, "welcome-pack").await;
    // An event on the events page.
    app.post_webhook(&fixture("checkout_session_expired.json")).await;
    let browser = Browser::start(&app).await;

    browser.goto("/console/search").await;
    assert_eq!(
        browser.path().await,
        "/console/sign-in",
        "signed out, the console asks to sign in"
    );
    browser.fill("input[name=user]", "alice").await;
    browser.screenshot("sign-in").await;
    browser.fill("input[name=password]", PASSWORD).await;
    browser
        .click_then("main.card button[type=submit]", "form.search")
        .await;

    browser.fill("input[name=q]", "ada@example.com").await;
    browser.screenshot("search").await;
    browser.click_then("form.search button", "section.summary").await;
    assert_eq!(browser.path().await, "/console/accounts/acct_browser");

    browser
        .fill("form[action$='/grant'] input[name=credits]", "250")
        .await;
    browser
        .fill(
            "form[action$='/grant'] input[name=reason]",
            "goodwill after outage",
        )
        .await;
    browser
        .click_then("form[action$='/grant'] button", "p.notice")
        .await;
    let page = browser.text().await;
    assert!(page.contains("Granted 250 credits."), "{page}");
    assert!(page.contains("1250"), "the new balance: {page}");
    assert!(
        page.contains("goodwill after outage"),
        "the entry and the audit line: {page}"
    );
    // The whole account page: entries, lots and the audit line below the fold.
    browser.client.set_window_size(1280, 2300).await.expect("resize");
    browser.screenshot("account").await;
    browser.client.set_window_size(1280, 1100).await.expect("resize");

    // A forged CSRF token is refused, and nothing is granted.
    browser
        .client
        .execute(
            "document.querySelector(\"form[action$='/grant'] input[name=csrf]\").value = 'forged';",
            vec![],
        )
        .await
        .expect("script");
    browser
        .fill("form[action$='/grant'] input[name=credits]", "999")
        .await;
    browser
        .fill("form[action$='/grant'] input[name=reason]", "forged")
        .await;
    browser
        .click_then("form[action$='/grant'] button", "p.error")
        .await;
    let refused = browser.text().await;
    assert!(refused.contains("403") && refused.contains("CSRF"), "{refused}");

    browser.goto("/console/events").await;
    assert!(browser.text().await.contains("checkout.session.expired"));
    browser.screenshot("events").await;
    browser.goto("/console/audit").await;
    let audit = browser.text().await;
    assert!(
        audit.contains("alice") && audit.contains("goodwill after outage"),
        "{audit}"
    );
    assert!(!audit.contains("forged"), "{audit}");
    browser.screenshot("audit").await;

    browser.click_then("header .who button", "main.card").await;
    assert_eq!(browser.path().await, "/console/sign-in");
    browser.goto("/console/accounts/acct_browser").await;
    assert_eq!(browser.path().await, "/console/sign-in", "signed out for good");

    // A viewer sees no actions, and a grant posted anyway is refused.
    browser.sign_in("victor").await;
    browser.goto("/console/accounts/acct_browser").await;
    let forms = browser
        .client
        .find_all(Locator::Css("form[action$='/grant']"))
        .await
        .expect("find");
    assert!(forms.is_empty(), "a viewer gets no grant form");
    browser
        .client
        .execute(
            "const f = document.createElement('form'); f.method = 'post';
             f.action = '/console/accounts/acct_browser/grant';
             const fields = { csrf: document.querySelector('input[name=csrf]').value,
                              key: '0123456789abcdef0123456789abcdef', credits: '5', reason: 'sneaky' };
             for (const [name, value] of Object.entries(fields)) {
               const input = document.createElement('input'); input.name = name; input.value = value;
               f.appendChild(input);
             }
             document.body.appendChild(f); f.submit();",
            vec![],
        )
        .await
        .expect("script");
    browser
        .client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("p.error"))
        .await
        .expect("the refusal page");
    assert!(browser.text().await.contains("viewers cannot act"));
    assert_eq!(app.entries_of_kind("acct_browser", "grant").await.len(), 2);

    browser.client.clone().close().await.expect("close the browser");
}
