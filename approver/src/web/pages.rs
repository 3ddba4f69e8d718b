//! HTML rendering of the web UI pages (pure: data in, HTML string out).

use dbward_approval_api::{RequestStatus, RequestView, timefmt};

use super::highlight::{escape, sql};

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#cfe0ff;text-decoration:none}header .who{margin-left:auto}
main{padding:1em 1.4em;max-width:1100px}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border-bottom:1px solid #e3e6ea;padding:.4em .6em;text-align:left;vertical-align:top}
pre.sql{background:#0f1522;color:#e6e6e6;padding:1em;border-radius:6px;white-space:pre-wrap;overflow-x:auto}
.kw{color:#7fb4ff;font-weight:bold}.str{color:#a5e07a}.num{color:#f5b86b}.com{color:#8a93a5;font-style:italic}
.status{padding:.1em .5em;border-radius:4px;font-size:.85em}.pending{background:#fff3c4}.approved{background:#c9f2d0}.denied{background:#ffd0d0}.expired{background:#e3e6ea}
.flag{background:#b00020;color:#fff;padding:.1em .5em;border-radius:4px}
.error{background:#ffd0d0;padding:.6em;border-radius:4px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1em}dt{font-weight:bold}
form.inline{display:inline}textarea{width:100%;min-height:4em}
"#;

/// Page frame with navigation.
pub fn layout(title: &str, principal: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} · dbward</title><style>{STYLE}</style></head>\
         <body><header><strong>dbward</strong><a href=\"/ui/requests\">Pending</a><a href=\"/ui/requests?status=all\">History</a>\
         <a href=\"/ui/reviews\">Break-glass reviews</a><a href=\"/ui/events\">Events</a>\
         <span class=\"who\">{p} · <a href=\"/auth/logout\">log out</a></span></header><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title),
        p = escape(principal),
    )
}

/// The approver-token login form (services without `[oidc]`); `next` is where to go after.
pub fn token_login(next: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Log in · dbward</title><style>{STYLE}</style></head>\
         <body><main><h1>Log in</h1><p>This approval service has no OpenID Connect login. Log in with your \
         approver token (<code>[[approver_tokens]]</code> in approver.toml, the one <code>dbward approvals \
         --token</code> uses).</p><form method=\"post\" action=\"/auth/token\"><input type=\"hidden\" name=\"next\" value=\"{n}\">\
         <p><input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" size=\"48\" autofocus></p>\
         <p><button type=\"submit\">Log in</button></p></form></main></body></html>",
        n = escape(next),
    )
}

/// A plain message page (errors, login problems).
pub fn message(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head>\
         <body><main><h1>{t}</h1><p class=\"error\" id=\"error\">{m}</p><p><a href=\"/ui/requests\">Back to requests</a></p></main></body></html>",
        t = escape(title),
        m = escape(text)
    )
}

fn status_badge(s: RequestStatus) -> String {
    format!("<span class=\"status {0}\">{0}</span>", s.as_str())
}

fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// Request list with status filter and search.
pub fn list(principal: &str, views: &[RequestView], status: &str, q: &str) -> String {
    let mut rows = String::new();
    for v in views {
        let r = &v.request;
        rows.push_str(&format!(
            "<tr class=\"request\" data-id=\"{id}\"><td><a href=\"/ui/requests/{id}\">{short}</a></td><td>{st}{bg}</td><td>{host}/{db}</td>\
             <td>{who}</td><td><code>{stmt}</code></td><td>{votes}/{quorum}</td><td>{exp}</td></tr>",
            id = r.request_id,
            short = &r.request_id.to_string()[..8],
            st = status_badge(v.status),
            bg = if v.break_glass { " <span class=\"flag\">break-glass</span>" } else { "" },
            host = escape(&r.host),
            db = escape(r.database.as_deref().unwrap_or("-")),
            who = escape(&r.requester.principal),
            stmt = sql(&one_line(&r.statement, 90)),
            votes = v.votes.len(),
            quorum = r.quorum,
            exp = timefmt::format(r.expires_at),
        ));
    }
    if views.is_empty() {
        rows.push_str("<tr><td colspan=\"7\" id=\"empty\">No requests.</td></tr>");
    }
    let options: String = ["pending", "approved", "denied", "expired", "all"]
        .iter()
        .map(|s| {
            format!(
                "<option{}>{s}</option>",
                if *s == status { " selected" } else { "" }
            )
        })
        .collect();
    let body = format!(
        "<form method=\"get\" action=\"/ui/requests\"><select name=\"status\">{options}</select> \
         <input name=\"q\" placeholder=\"search statement, requester, host, id\" value=\"{q}\"> <button>Search</button></form>\
         <table><thead><tr><th>Id</th><th>Status</th><th>Host/DB</th><th>Requester</th><th>Statement</th><th>Votes</th><th>Expires</th></tr></thead>\
         <tbody>{rows}</tbody></table>",
        q = escape(q)
    );
    let title = if status == "pending" {
        "Pending requests"
    } else {
        "Requests"
    };
    layout(title, principal, &body)
}

/// One request: statement, identity and context, votes, decision, actions.
pub fn detail(principal: &str, v: &RequestView, csrf: &str, can_break_glass: bool) -> String {
    let r = &v.request;
    let mut facts = String::new();
    for (k, val) in crate::channels::facts(v) {
        facts.push_str(&format!("<dt>{}</dt><dd>{}</dd>", escape(k), escape(&val)));
    }
    facts.push_str(&format!(
        "<dt>Session</dt><dd>{}</dd>",
        escape(&r.session_id)
    ));
    let mut votes = String::new();
    for vote in &v.votes {
        votes.push_str(&format!(
            "<tr class=\"vote\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&vote.principal),
            vote.vote.as_str(),
            escape(vote.comment.as_deref().unwrap_or("")),
            escape(&vote.channel),
            timefmt::format(vote.at)
        ));
    }
    let outcome = match &v.decision {
        Some(_) => format!(
            "<p id=\"outcome\">{}</p>",
            escape(&crate::channels::outcome_line(v))
        ),
        None => String::new(),
    };
    let mut actions = String::new();
    if v.status == RequestStatus::Pending {
        actions.push_str(&format!(
            "<h2>Decide</h2><form method=\"post\" action=\"/ui/requests/{id}/vote\" id=\"vote-form\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <textarea name=\"comment\" placeholder=\"Comment (a denial's reason reaches the client)\"></textarea>\
             <button name=\"vote\" value=\"approve\" id=\"approve\">Approve</button> \
             <button name=\"vote\" value=\"deny\" id=\"deny\">Deny</button></form>",
            id = r.request_id
        ));
        if can_break_glass {
            actions.push_str(&format!(
                "<h2>Break glass</h2><form method=\"post\" action=\"/ui/requests/{id}/break-glass\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <textarea name=\"reason\" required placeholder=\"Why this cannot wait (flagged, alerted, reviewed)\"></textarea>\
                 <button>Authorise myself</button></form>",
                id = r.request_id
            ));
        }
    }
    let body = format!(
        "<p>{badge}{flag} request <code>{id}</code></p>{outcome}\
         <pre class=\"sql\" id=\"statement\">{stmt}</pre><dl>{facts}</dl>\
         <h2>Votes</h2><table><thead><tr><th>Who</th><th>Vote</th><th>Comment</th><th>Channel</th><th>At</th></tr></thead><tbody>{votes}</tbody></table>{actions}",
        badge = status_badge(v.status),
        flag = if v.break_glass {
            " <span class=\"flag\">break-glass</span>"
        } else {
            ""
        },
        id = r.request_id,
        stmt = sql(&r.statement),
    );
    layout(&format!("{} on {}", r.class, r.host), principal, &body)
}

/// Break-glass approvals awaiting review.
pub fn reviews(principal: &str, views: &[RequestView], csrf: &str) -> String {
    let mut rows = String::new();
    for v in views {
        rows.push_str(&format!(
            "<tr class=\"review\"><td><a href=\"/ui/requests/{id}\">{short}</a></td><td>{reason}</td><td><code>{stmt}</code></td>\
             <td><form method=\"post\" action=\"/ui/requests/{id}/review\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input name=\"comment\" required placeholder=\"review conclusion\"> <button>Mark reviewed</button></form></td></tr>",
            id = v.request.request_id,
            short = &v.request.request_id.to_string()[..8],
            reason = escape(&crate::channels::outcome_line(v)),
            stmt = sql(&one_line(&v.request.statement, 80)),
        ));
    }
    if views.is_empty() {
        rows.push_str("<tr><td colspan=\"4\">Nothing to review.</td></tr>");
    }
    layout(
        "Break-glass reviews",
        principal,
        &format!(
            "<table><thead><tr><th>Id</th><th>Break-glass</th><th>Statement</th><th>Review</th></tr></thead><tbody>{rows}</tbody></table>"
        ),
    )
}

/// Event search and live stream (the script polls `/api/v1/events` with the session).
pub fn events(principal: &str, host: &str, q: &str) -> String {
    let config = serde_json::json!({"host": host, "q": q})
        .to_string()
        .replace('<', "\\u003c");
    let body = format!(
        "<form method=\"get\" action=\"/ui/events\"><input name=\"host\" placeholder=\"host\" value=\"{h}\"> \
         <input name=\"q\" placeholder=\"search\" value=\"{qq}\"> <button>Filter</button></form>\
         <p>Live: <span id=\"count\">0</span> event(s)</p>\
         <table><thead><tr><th>Time</th><th>Id</th><th>Type</th><th>Details</th></tr></thead><tbody id=\"events\"></tbody></table>\
         <script>\
         const cfg = {config}; let after = -1;\
         async function poll() {{\
           try {{\
             const u = '/api/v1/events?host=' + encodeURIComponent(cfg.host) + '&q=' + encodeURIComponent(cfg.q) + '&after=' + after;\
             const r = await fetch(u, {{credentials: 'same-origin'}});\
             if (r.ok) {{ const j = await r.json(); const tb = document.getElementById('events');\
               for (const ev of j.events) {{ const tr = document.createElement('tr'); tr.className = 'event';\
                 for (const v of [ev.ts || '', ev.id, ev.type || '', JSON.stringify(ev)]) {{ const td = document.createElement('td'); td.textContent = v; tr.appendChild(td); }}\
                 tb.appendChild(tr); }}\
               after = j.next; document.getElementById('count').textContent = tb.children.length; }}\
           }} catch (e) {{}}\
           setTimeout(poll, 1000);\
         }}\
         poll();\
         </script>",
        h = escape(host),
        qq = escape(q),
    );
    layout("Events", principal, &body)
}
