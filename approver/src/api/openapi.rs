//! The published OpenAPI 3.1 document (`approver/openapi.json`, maintained by hand) and
//! the route table it must match, checked by a test.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as served at `/openapi.json`.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// Every API route (method, path) the router serves; the test keeps the document and
/// this table equal, and the server tests call each of them.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/requests"),
    ("get", "/api/v1/requests"),
    ("get", "/api/v1/requests/{id}"),
    ("get", "/api/v1/requests/{id}/decision"),
    ("post", "/api/v1/requests/{id}/votes"),
    ("post", "/api/v1/requests/{id}/break-glass"),
    ("post", "/api/v1/requests/{id}/review"),
    ("get", "/api/v1/reviews"),
    ("post", "/api/v1/events"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/public-key"),
    ("post", "/api/v1/channels/slack/interactivity"),
    ("post", "/api/v1/channels/teams/callback"),
    ("get", "/openapi.json"),
    ("get", "/healthz"),
];

/// `GET /openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn openapi_document_lists_exactly_the_served_routes() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for method in ops.as_object().expect("operations").keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let served: BTreeSet<_> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("json");
        let text = DOCUMENT;
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().expect("name");
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
    }
}
