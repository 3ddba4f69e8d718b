//! The web UI behind OpenID Connect: login against a local test IdP, pages, voting by
//! form with CSRF protection; and the same in headless Chromium (Debian's `chromium`).
//! Without `[oidc]`, humans log in with their approver token.

mod util;

use std::process::Command;
use std::time::Duration;

use dbward_approval_api::{EventBatch, Outcome, RequestStatus};
use reqwest::redirect::Policy;
use serde_json::json;
use util::idp::Idp;
use util::*;

/// A browser-like HTTP client that does not follow redirects, so each hop is checked.
struct Browser {
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .expect("client"),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> (u16, Option<String>, String) {
        let resp = req
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("send");
        for c in resp.headers().get_all("set-cookie") {
            let c = c.to_str().expect("cookie");
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').expect("k=v");
            self.cookies.retain(|(name, _)| name != k);
            if !v.is_empty() {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().expect("location").to_string());
        (status, location, resp.text().await.expect("body"))
    }

    async fn get(&mut self, url: &str) -> (u16, Option<String>, String) {
        let req = self.http.get(url);
        self.send(req).await
    }

    /// Follows redirects (absolute or relative to `base`) until a non-redirect.
    async fn follow(&mut self, base: &str, mut url: String) -> (u16, String, String) {
        for _ in 0..10 {
            let (status, location, body) = self.get(&url).await;
            match location {
                Some(l) if (300..400).contains(&status) => {
                    url = if l.starts_with("http") {
                        l
                    } else {
                        format!("{base}{l}")
                    }
                }
                _ => return (status, url, body),
            }
        }
        panic!("redirect loop at {url}");
    }
}

async fn with_web() -> (Idp, Harness) {
    let idp = Idp::start().await;
    let h = start(&idp.config()).await;
    (idp, h)
}

#[tokio::test]
async fn oidc_login_shows_pending_requests_and_votes_by_form_with_csrf() {
    let (idp, h) = with_web().await;
    let base = h.url();
    let req = request("DELETE FROM orders WHERE note = 'x<y' -- cleanup", 1, 120);
    h.agent().file_request(&req).await.expect("file");
    let id = req.request_id;

    let mut b = Browser::new();
    let (status, location, _) = b.get(&format!("{base}/ui/requests")).await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/auth/login?next=%2Fui%2Frequests"))
    );
    let (status, url, page) = b.follow(&base, format!("{base}/ui/requests/{id}")).await;
    assert_eq!(
        (status, url.as_str()),
        (200, format!("{base}/ui/requests/{id}").as_str()),
        "{page}"
    );
    assert!(
        page.contains("bob · <a href=\"/auth/logout\">"),
        "logged in as bob"
    );
    assert!(
        page.contains(r#"<span class="kw">DELETE</span> <span class="kw">FROM</span> orders"#),
        "highlighted"
    );
    assert!(page.contains(r#"<span class="str">&#39;x&lt;y&#39;</span>"#));
    assert!(page.contains(r#"<span class="com">-- cleanup</span>"#));
    assert!(
        page.contains("cleanup of test orders"),
        "requester's reason is shown"
    );
    assert!(page.contains("claude-bot (ai_agent, owner olivia)"));
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf token")
        .to_string();

    let (status, _, list) = b.get(&format!("{base}/ui/requests")).await;
    assert_eq!(status, 200);
    assert!(list.contains(&format!("data-id=\"{id}\"")));
    let (_, _, search) = b
        .get(&format!("{base}/ui/requests?status=all&q=nothing-matches"))
        .await;
    assert!(search.contains("id=\"empty\""));

    let form = |csrf: &str| {
        serde_urlencoded::to_string([
            ("csrf", csrf),
            ("vote", "deny"),
            ("comment", "use the archive job"),
        ])
        .expect("form")
    };
    let post = b
        .http
        .post(format!("{base}/ui/requests/{id}/vote"))
        .header("content-type", "application/x-www-form-urlencoded");
    let (status, _, body) = b.send(post.body(form("forged"))).await;
    assert_eq!(status, 403, "{body}");
    assert!(audited(&h, "bad_csrf", 403).await);
    assert_eq!(
        h.approver("alice").get(id).await.expect("get").status,
        RequestStatus::Pending
    );
    let post = b
        .http
        .post(format!("{base}/ui/requests/{id}/vote"))
        .header("content-type", "application/x-www-form-urlencoded");
    let (status, location, _) = b.send(post.body(form(&csrf))).await;
    assert_eq!(
        (status, location),
        (303, Some(format!("/ui/requests/{id}")))
    );
    let d = h
        .agent()
        .wait_decision(id, Duration::ZERO)
        .await
        .expect("poll")
        .expect("decided");
    assert_eq!(
        (d.outcome, d.reason.as_str(), d.approvers.clone()),
        (
            Outcome::Denied,
            "use the archive job",
            vec!["bob".to_string()]
        )
    );
    let (_, _, page) = b.get(&format!("{base}/ui/requests/{id}")).await;
    assert!(page.contains("Denied by bob: use the archive job"));
    assert!(page.contains("<td>web</td>"), "vote channel shown");

    // An identity the directory does not know gets no session.
    idp.log_in_as("sub-stranger", "stranger@example.com");
    let mut stranger = Browser::new();
    let (status, _, body) = stranger.follow(&base, format!("{base}/ui/requests")).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("not in the approver&#39;s directory"),
        "{body}"
    );
    // A callback whose state does not match the browser's login is refused.
    let (status, _, _) = Browser::new()
        .get(&format!("{base}/auth/callback?code=x&state=y"))
        .await;
    assert_eq!(status, 401);
    assert!(audited(&h, "oidc_state", 401).await);
}

#[tokio::test]
async fn without_oidc_humans_log_in_with_their_approver_token_and_vote() {
    let h = start("").await;
    let base = h.url();
    let req = request("DELETE FROM orders WHERE id = 7", 1, 120);
    h.agent().file_request(&req).await.expect("file");
    let id = req.request_id;
    let here = format!("/ui/requests/{id}");

    let mut b = Browser::new();
    let (status, location, _) = b.get(&format!("{base}{here}")).await;
    let next = serde_urlencoded::to_string([("next", here.as_str())]).expect("query");
    assert_eq!(
        (status, location),
        (303, Some(format!("/auth/token?{next}")))
    );
    let (status, _, form) = b.get(&format!("{base}/auth/token?{next}")).await;
    assert_eq!(status, 200, "{form}");
    assert!(
        form.contains(&format!("name=\"next\" value=\"{here}\"")),
        "{form}"
    );
    let login = |b: &Browser, token: &str| {
        b.http
            .post(format!("{base}/auth/token"))
            .form(&[("token", token), ("next", here.as_str())])
    };
    for (token, refused) in [
        ("not-a-token-of-this-service".to_string(), 401),
        (DB1_TOKEN.to_string(), 401),
        (token("claude-bot"), 403),
        (token("deploybot"), 403),
    ] {
        let (status, _, body) = b.send(login(&b, &token)).await;
        assert_eq!(status, refused, "{token}: {body}");
        assert!(
            !b.cookies.iter().any(|(k, _)| k == "dbward_session"),
            "{token} got a session"
        );
    }
    let (status, location, _) = b.send(login(&b, &token("bob"))).await;
    assert_eq!((status, location), (303, Some(here.clone())));
    let (status, _, page) = b.get(&format!("{base}{here}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("bob · <a href=\"/auth/logout\">"), "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf token")
        .to_string();
    let vote = b.http.post(format!("{base}{here}/vote")).form(&[
        ("csrf", csrf.as_str()),
        ("vote", "approve"),
        ("comment", "ok"),
    ]);
    let (status, _, body) = b.send(vote).await;
    assert_eq!(status, 303, "{body}");
    let d = h
        .agent()
        .wait_decision(id, Duration::ZERO)
        .await
        .expect("poll")
        .expect("decided");
    assert_eq!(
        (d.outcome, d.approvers.clone()),
        (Outcome::Approved, vec!["bob".to_string()])
    );
}

#[tokio::test]
async fn with_oidc_the_token_login_is_refused() {
    let (_idp, h) = with_web().await;
    let base = h.url();
    let mut b = Browser::new();
    let (status, location, _) = b.get(&format!("{base}/auth/token")).await;
    assert_eq!((status, location.as_deref()), (303, Some("/auth/login")));
    let post = b
        .http
        .post(format!("{base}/auth/token"))
        .form(&[("token", token("bob").as_str())]);
    let (status, _, _) = b.send(post).await;
    assert_eq!(status, 404);
    assert!(!b.cookies.iter().any(|(k, _)| k == "dbward_session"));
}

fn chromium(args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile");
    let out = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .expect("run /usr/bin/chromium (apt-get install chromium)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_logs_in_and_renders_request_and_live_events() {
    let (_idp, h) = with_web().await;
    let base = h.url();
    let req = request("GRANT ALL PRIVILEGES ON orders TO claude", 1, 300);
    h.agent().file_request(&req).await.expect("file");
    let events: Vec<_> = (1..=3).map(|i| json!({"id": format!("db1:{i}"), "seq": i, "type": "statement", "ts": "2026-01-01T00:00:00Z"})).collect();
    h.agent()
        .send_events(
            &EventBatch {
                host: "db1".into(),
                events,
            },
            true,
        )
        .await
        .expect("events");

    let login = format!("{base}/auth/login?next=/ui/requests/{}", req.request_id);
    let dom = tokio::task::spawn_blocking(move || chromium(&["--dump-dom", &login]))
        .await
        .expect("join");
    assert!(
        dom.contains("bob · "),
        "browser is logged in as bob:\n{dom}"
    );
    assert!(dom.contains(r#"<span class="kw">GRANT</span> <span class="kw">ALL</span> <span class="kw">PRIVILEGES</span>"#), "{dom}");
    assert!(dom.contains("id=\"approve\""), "approve button rendered");

    let events_url = format!("{base}/auth/login?next=/ui/events%3Fhost%3Ddb1");
    let dom = tokio::task::spawn_blocking(move || {
        chromium(&["--virtual-time-budget=5000", "--dump-dom", &events_url])
    })
    .await
    .expect("join");
    let rows = dom.matches("<tr class=\"event\">").count();
    assert_eq!(
        rows, 3,
        "the live stream script rendered every event:\n{dom}"
    );
    assert!(dom.contains("<td>db1:3</td>"));

    if let Ok(dir) = std::env::var("DBWARD_SCREENSHOT_DIR") {
        let url = format!("{base}/auth/login?next=/ui/requests/{}", req.request_id);
        let shot = format!("--screenshot={dir}/approver-request.png");
        tokio::task::spawn_blocking(move || chromium(&["--window-size=1200,900", &shot, &url]))
            .await
            .expect("join");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_approves_with_a_comment_by_clicking_in_chromium() {
    let (_idp, h) = with_web().await;
    let req = request("UPDATE orders SET status = 'void' WHERE id = 7", 1, 300);
    h.agent().file_request(&req).await.expect("file");
    let id = req.request_id;
    let waiter = {
        let agent = h.agent();
        tokio::spawn(async move { agent.wait_decision(id, Duration::from_secs(30)).await })
    };

    let mut browser =
        util::cdp::Chromium::open(&format!("{}/auth/login?next=/ui/requests", h.url())).await;
    browser
        .wait_for(&format!(
            "document.querySelector('tr[data-id=\"{id}\"] a') !== null"
        ))
        .await;
    browser
        .eval(&format!(
            "document.querySelector('tr[data-id=\"{id}\"] a').click()"
        ))
        .await;
    browser
        .wait_for("document.getElementById('approve') !== null")
        .await;
    let statement = browser
        .eval("document.getElementById('statement').innerHTML")
        .await;
    assert!(
        statement
            .as_str()
            .is_some_and(|s| s.contains(r#"<span class="kw">UPDATE</span>"#)),
        "{statement}"
    );
    browser.eval("document.querySelector('textarea[name=comment]').value = 'checked with finance'; document.getElementById('approve').click()").await;
    browser
        .wait_for("document.getElementById('outcome') !== null")
        .await;
    let outcome = browser
        .eval("document.getElementById('outcome').textContent")
        .await;
    assert_eq!(outcome, "Approved by bob");

    let d = waiter.await.expect("join").expect("poll").expect("decided");
    assert_eq!(
        (d.outcome, d.approvers.clone(), d.reason.as_str()),
        (
            Outcome::Approved,
            vec!["bob".to_string()],
            "checked with finance"
        )
    );
    let view = h.approver("alice").get(id).await.expect("get");
    assert_eq!(
        (
            view.votes[0].channel.as_str(),
            view.votes[0].comment.as_deref()
        ),
        ("web", Some("checked with finance"))
    );
}
