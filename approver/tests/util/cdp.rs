//! Drives headless Chromium through the DevTools protocol: start with an URL, evaluate
//! JavaScript in the page (to click and type like a person), stop on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A headless Chromium with one page.
pub struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Chromium {
    /// Starts Chromium showing `url` and attaches to its page.
    pub async fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().expect("profile");
        let child = Command::new("/usr/bin/chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/bin/chromium (apt-get install chromium)");
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some(port) = text
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<u16>().ok())
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "chromium wrote no DevToolsActivePort within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let ws_url = loop {
            let list: Value = match reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let page = list
                .as_array()
                .and_then(|a| a.iter().find(|t| t["type"] == "page").cloned());
            if let Some(ws) =
                page.and_then(|p| p["webSocketDebuggerUrl"].as_str().map(str::to_string))
            {
                break ws;
            }
            assert!(Instant::now() < deadline, "chromium exposed no page target");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .expect("devtools websocket");
        Self {
            child,
            _profile: profile,
            ws,
            next_id: 1,
        }
    }

    /// Evaluates `expression` in the page and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": "Runtime.evaluate", "params": {"expression": expression, "returnByValue": true, "awaitPromise": true}});
        self.ws
            .send(Message::Text(msg.to_string()))
            .await
            .expect("send devtools command");
        while let Some(frame) = self.ws.next().await {
            if let Message::Text(text) = frame.expect("devtools frame") {
                let v: Value = serde_json::from_str(&text).expect("devtools json");
                if v["id"] == id {
                    return v["result"]["result"]["value"].clone();
                }
            }
        }
        panic!("devtools connection closed");
    }

    /// Evaluates `expression` until it returns `true` (up to 20 s).
    pub async fn wait_for(&mut self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.eval(expression).await == Value::Bool(true) {
                return;
            }
            let page = self
                .eval("document.location.href + ' ' + document.body.innerText.slice(0, 300)")
                .await;
            assert!(
                Instant::now() < deadline,
                "page never satisfied `{expression}`; at {page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
