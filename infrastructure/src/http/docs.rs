//! The OpenAPI document (the service's, merged with the operational endpoints every service has) and the docs
//! page: a self-contained HTML rendering of that document, with no scripts and nothing fetched from elsewhere,
//! so it works offline and behind any firewall.

use std::fmt::Write as _;

use serde_json::Value;
use utoipa::openapi::{InfoBuilder, OpenApi as OpenApiDocument, OpenApiBuilder};
use utoipa::OpenApi;

use super::error::ErrorBody;
use super::health::{self, LivenessBody, ReadinessBody};

#[derive(OpenApi)]
#[openapi(
    paths(health::live, health::ready, health::metrics),
    components(schemas(ErrorBody, LivenessBody, ReadinessBody)),
    tags((name = "operations", description = "Health checks and metrics, the same in every service"))
)]
struct OperationsApi;

/// `service` (or an empty document titled `title`) with the operational endpoints added.
pub(crate) fn document(service: Option<OpenApiDocument>, title: &str) -> OpenApiDocument {
    let mut document = service.unwrap_or_else(|| {
        OpenApiBuilder::new()
            .info(InfoBuilder::new().title(title).version("0.0.0").build())
            .build()
    });
    document.merge(OperationsApi::openapi());
    document
}

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}\
h1{margin-bottom:.2rem}section{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}\
.method{display:inline-block;min-width:4.5rem;font-weight:bold;text-transform:uppercase}\
.get{color:#1565c0}.post{color:#2e7d32}.put,.patch{color:#ef6c00}.delete{color:#c62828}\
table{border-collapse:collapse;width:100%;margin:.3rem 0}td,th{border-bottom:1px solid #eee;text-align:left;padding:.2rem .4rem;vertical-align:top}\
code{background:#f5f5f5;padding:0 .2rem}.muted{color:#666}";

/// The docs page for `document`.
pub(crate) fn render_html(document: &OpenApiDocument) -> String {
    let document = serde_json::to_value(document).unwrap_or(Value::Null);
    let info = &document["info"];
    let title = text(&info["title"]);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} — API</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1><p class=\"muted\">version {version} · \
         <a href=\"/openapi.json\">OpenAPI document</a></p>",
        title = escape(&title),
        version = escape(&text(&info["version"])),
    );
    if let Some(description) = info["description"].as_str() {
        let _ = write!(html, "<p>{}</p>", escape(description));
    }
    html.push_str("<h2>Endpoints</h2>");
    if let Some(paths) = document["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    render_operation(&mut html, method, path, operation);
                }
            }
        }
    }
    if let Some(schemas) = document["components"]["schemas"].as_object() {
        html.push_str("<h2>Schemas</h2>");
        for (name, schema) in schemas {
            render_schema(&mut html, name, schema);
        }
    }
    html.push_str("</body></html>");
    html
}

fn render_operation(html: &mut String, method: &str, path: &str, operation: &Value) {
    let id = format!("{method}-{path}").replace(['/', '{', '}'], "-");
    let _ = write!(
        html,
        "<section id=\"{id}\"><h3><span class=\"method {method}\">{method}</span> <code>{path}</code></h3>",
        id = escape(&id),
        path = escape(path),
    );
    for key in ["summary", "description"] {
        if let Some(value) = operation[key].as_str() {
            let _ = write!(html, "<p>{}</p>", escape(value));
        }
    }
    if let Some(parameters) = operation["parameters"].as_array().filter(|p| !p.is_empty()) {
        html.push_str("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th>required</th><th>description</th></tr>");
        for parameter in parameters {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&text(&parameter["name"])),
                escape(&text(&parameter["in"])),
                escape(&type_of(&parameter["schema"])),
                if parameter["required"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                escape(&text(&parameter["description"])),
            );
        }
        html.push_str("</table>");
    }
    if let Some(content) = operation["requestBody"]["content"].as_object() {
        html.push_str("<h4>Request body</h4><table>");
        for (media_type, body) in content {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                escape(media_type),
                escape(&type_of(&body["schema"])),
            );
        }
        html.push_str("</table>");
    }
    if let Some(responses) = operation["responses"].as_object() {
        html.push_str("<h4>Responses</h4><table>");
        for (status, response) in responses {
            let body = response["content"]
                .as_object()
                .and_then(|content| content.values().next())
                .map(|body| type_of(&body["schema"]))
                .unwrap_or_default();
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(status),
                escape(&text(&response["description"])),
                escape(&body),
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</section>");
}

fn render_schema(html: &mut String, name: &str, schema: &Value) {
    let _ = write!(
        html,
        "<section id=\"schema-{0}\"><h3>{0}</h3>",
        escape(name)
    );
    if let Some(description) = schema["description"].as_str() {
        let _ = write!(html, "<p>{}</p>", escape(description));
    }
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(properties) = schema["properties"].as_object() {
        html.push_str(
            "<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>",
        );
        for (field, property) in properties {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(field),
                escape(&type_of(property)),
                if required.contains(&field.as_str()) {
                    "yes"
                } else {
                    "no"
                },
                escape(&text(&property["description"])),
            );
        }
        html.push_str("</table>");
    } else {
        let _ = write!(html, "<p>{}</p>", escape(&type_of(schema)));
    }
    html.push_str("</section>");
}

/// A short description of a schema's type: `Account`, `string (uuid)`, `Account[]`, `"open" | "closed"`.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .map(|value| value.to_string())
            .collect::<Vec<_>>()
            .join(" | ");
    }
    for combinator in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[combinator].as_array() {
            let separator = if combinator == "allOf" { " & " } else { " | " };
            return options
                .iter()
                .map(type_of)
                .collect::<Vec<_>>()
                .join(separator);
        }
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.clone(),
        // OpenAPI 3.1 spells a nullable type as a list: ["string", "null"].
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => String::new(),
    };
    if kind.starts_with("array") {
        return format!("{}[]", type_of(&schema["items"]));
    }
    match schema["format"].as_str() {
        Some(format) => format!("{kind} ({format})"),
        None => kind,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_operations_and_schemas_escaped() {
        let mut service = document(None, "Accounts <API>");
        service.info.description = Some("Open & run accounts".to_owned());
        let html = render_html(&service);
        assert!(html.contains("<h1>Accounts &lt;API&gt;</h1>"), "{html}");
        assert!(html.contains("Open &amp; run accounts"));
        assert!(html.contains("<code>/health/ready</code>"));
        assert!(html.contains("<h3>ReadinessBody</h3>"));
        assert!(!html.contains("<script"), "the page needs no scripts");
    }
}
