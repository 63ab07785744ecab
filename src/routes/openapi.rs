//! The OpenAPI document at `/api/v1/openapi.json`: the parts each API module
//! derives, merged, then completed with what the derive cannot say (the
//! answers every operation can get, the fixed words a field takes) from the
//! constants the server itself checks. The same document tells the API which
//! query parameters each operation takes.

use actix_web::HttpResponse;

use crate::error::AppError;

/// `GET /api/v1/openapi.json`.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(&*SERVED)
}

/// The document as served. utoipa writes a link's fields as they are named
/// in Rust (`operation_id`), which no OpenAPI reader knows: they are renamed
/// to the specification's `operationId`, `operationRef` and `requestBody`.
static SERVED: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
    let mut doc = serde_json::to_value(&*DOCUMENT).unwrap_or(serde_json::Value::Null);
    rename_link_fields(&mut doc);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        list_items_by_reference(schemas);
        mark_times(schemas);
    }
    describe_event_streams(&mut doc);
    doc
});

/// utoipa inlines a generic list's item (`List<AgentJson>`), without what the
/// item's own schema was given afterwards (the fixed words of a field): the
/// lists point at it instead.
fn list_items_by_reference(schemas: &mut serde_json::Map<String, serde_json::Value>) {
    let lists: Vec<(String, String)> = schemas
        .keys()
        .filter_map(|name| {
            let item = name.strip_prefix("List_")?;
            schemas
                .contains_key(item)
                .then(|| (name.clone(), item.to_string()))
        })
        .collect();
    for (list, item) in lists {
        if let Some(items) = schemas
            .get_mut(&list)
            .and_then(|l| l.pointer_mut("/properties/data/items"))
        {
            *items = serde_json::json!({ "$ref": format!("#/components/schemas/{item}") });
        }
    }
}

/// Every time the API answers with is RFC 3339 text, named `…At` (or the two
/// billing dates): said so in the schema, as `format: date-time`.
fn mark_times(schemas: &mut serde_json::Map<String, serde_json::Value>) {
    let is_time =
        |name: &str| name.ends_with("At") || matches!(name, "currentPeriodEnd" | "graceUntil");
    let is_text = |p: &serde_json::Value| match &p["type"] {
        serde_json::Value::String(t) => t == "string",
        serde_json::Value::Array(types) => types.iter().any(|t| t == "string"),
        _ => false,
    };
    for schema in schemas.values_mut() {
        let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else {
            continue;
        };
        for (name, property) in properties.iter_mut() {
            if is_time(name) && is_text(property) && property.get("format").is_none() {
                property["format"] = "date-time".into();
            }
        }
    }
}

/// The reply operations answer with Server-Sent Events when asked: listed as
/// the second way their 200 can come.
fn describe_event_streams(doc: &mut serde_json::Value) {
    for path in [
        "/api/v1/conversations/{id}/messages",
        "/api/v1/chat/{org}/{agent}/conversations/{id}/messages",
    ] {
        let pointer = format!(
            "/paths/{}/post/responses/200/content",
            path.replace('~', "~0").replace('/', "~1")
        );
        if let Some(content) = doc.pointer_mut(&pointer).and_then(|c| c.as_object_mut()) {
            content.insert(
                "text/event-stream".into(),
                serde_json::json!({
                    "schema": {
                        "type": "string",
                        "description": "`event: delta` lines with `{\"text\": …}` as the reply is written, then `event: done` with the reply as the JSON body above, or `event: error` with the error shape",
                    }
                }),
            );
        }
    }
}

fn rename_link_fields(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let responses = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
            continue;
        };
        for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
            for (from, to) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(from) {
                    link.insert(to.into(), value);
                }
            }
        }
    }
}

/// The finished document, built once: it depends on nothing but the code.
static DOCUMENT: std::sync::LazyLock<utoipa::openapi::OpenApi> = std::sync::LazyLock::new(|| {
    let mut doc = merged_document();
    document_common_errors(&mut doc);
    // Rules first: they take `null` out of fields the choices then list.
    document_rules(&mut doc);
    document_choices(&mut doc);
    doc
});

/// Each documented operation's query parameters, by method and route
/// pattern (`GET /api/v1/conversations`), read from the OpenAPI document once.
static QUERY_PARAMETERS: std::sync::LazyLock<
    std::collections::HashMap<(String, String), Vec<String>>,
> = std::sync::LazyLock::new(|| {
    use utoipa::openapi::path::ParameterIn;
    let mut known = std::collections::HashMap::new();
    for (path, item) in &DOCUMENT.paths.paths {
        let operations = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let names = operation
                .parameters
                .iter()
                .flatten()
                .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                .map(|p| p.name.clone())
                .collect();
            known.insert((method.to_string(), path.clone()), names);
        }
    }
    known
});

/// Refuses a query parameter the operation does not take: `?stauts=open`
/// read as no filter at all would list (or a script act on) every
/// conversation. Operations the document does not describe are left alone.
pub async fn refuse_unknown_query_parameters(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    if !req.query_string().is_empty()
        && let Some(pattern) = req.match_pattern()
        && let Some(known) = QUERY_PARAMETERS.get(&(req.method().to_string(), pattern))
    {
        let unknown = url::form_urlencoded::parse(req.query_string().as_bytes())
            .map(|(name, _)| name)
            .find(|name| !known.iter().any(|k| k == name));
        if let Some(name) = unknown {
            let takes = if known.is_empty() {
                "no query parameters".to_string()
            } else {
                known.join(", ")
            };
            // A response carrying the error, which `error::render_errors`
            // gives the API's shape (an `Err` would skip it).
            let error = AppError::BadRequest(format!(
                "The query string is not valid: unknown parameter `{name}`; this endpoint takes {takes}."
            ));
            return Ok(req.error_response(error).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// The API's parts, one document.
fn merged_document() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    let mut doc = super::api::ApiDoc::openapi();
    doc.merge(super::api_agents::AgentsApiDoc::openapi());
    doc.merge(super::api_tickets::TicketsApiDoc::openapi());
    doc
}

/// The fields that take one of a fixed set of words, with the constants the
/// server checks them against: (schema, property, words).
fn choices() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    use crate::db::models::{conversation, knowledge, ticket};
    use crate::domain::Role;
    use crate::services::chat::providers::ProviderKind;
    let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
    let providers: Vec<&str> = ProviderKind::ALL.iter().map(|p| p.as_str()).collect();
    // A visitor starts on the page or in the widget; the API speaks for its own.
    let visitor_channels = vec![conversation::PAGE, conversation::WIDGET];
    let channels = vec![conversation::PAGE, conversation::WIDGET, conversation::API];
    vec![
        ("MemberUpdate", "role", roles.clone()),
        ("NewInvitation", "role", roles.clone()),
        ("MemberJson", "role", roles.clone()),
        ("InvitationJson", "role", roles),
        ("NewApiKey", "scope", super::api::API_KEY_SCOPES.to_vec()),
        ("AgentForm", "provider", providers.clone()),
        ("AgentJson", "provider", providers),
        ("StartChat", "channel", visitor_channels),
        ("ConversationJson", "channel", channels),
        (
            "ConversationStatus",
            "status",
            conversation::STATUSES.to_vec(),
        ),
        (
            "ConversationJson",
            "status",
            conversation::STATUSES.to_vec(),
        ),
        ("StatusJson", "status", conversation::STATUSES.to_vec()),
        (
            "DocumentStatusJson",
            "status",
            knowledge::DOCUMENT_STATUSES.to_vec(),
        ),
        ("TicketUpdate", "status", ticket::STATUSES.to_vec()),
        ("TicketJson", "status", ticket::STATUSES.to_vec()),
        ("MessageJson", "role", conversation::MESSAGE_ROLES.to_vec()),
        (
            "PublicMessage",
            "role",
            conversation::MESSAGE_ROLES.to_vec(),
        ),
        (
            "PublicTranscript",
            "status",
            conversation::STATUSES.to_vec(),
        ),
        (
            "DocumentJson",
            "status",
            knowledge::DOCUMENT_STATUSES.to_vec(),
        ),
    ]
}

/// Query parameters that take one of a fixed set of words: (path,
/// parameter, words); the empty word is the same as leaving it out.
fn parameter_choices() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    use crate::db::models::{conversation, ticket};
    vec![
        (
            "/api/v1/conversations",
            "status",
            [&[""], &conversation::STATUSES[..]].concat(),
        ),
        (
            "/api/v1/tickets",
            "status",
            [&["", "all"], &ticket::STATUSES[..]].concat(),
        ),
    ]
}

// The character ranges the patterns below are made of, once.
/// Control characters (C0, DEL and C1).
macro_rules! control {
    () => {
        r"\u0000-\u001f\u007f-\u009f"
    };
}
/// The zero-width and bidirectional characters `text::clean` drops.
macro_rules! invisible {
    () => {
        r"\u200b\u2060\u202a-\u202e"
    };
}

/// Something visible once trimmed: a character that is neither a space nor
/// one of those `text::clean` drops.
const VISIBLE: &str = concat!(r"[^\s", control!(), invisible!(), "]");
/// One word: no spaces, no control characters.
const ONE_WORD: &str = concat!(r"^[^\s", control!(), "]*$");
/// One line (no control characters) with something visible on it.
const ONE_LINE: &str = concat!(
    "^[^",
    control!(),
    "]*",
    r"[^\s",
    control!(),
    invisible!(),
    "]",
    "[^",
    control!(),
    "]*$"
);
/// Empty, or an http(s) URL without spaces or control characters.
const URL_OR_EMPTY: &str = concat!(r"^(\s*https?://[^\s", control!(), r"]+)?\s*$");
/// A site's origin: scheme, host (in ASCII: punycode for other scripts) and
/// port, no path.
const ORIGIN: &str = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$";

/// What a text field must hold beyond its length, as ECMA-262 patterns:
/// (schema, property, pattern).
fn patterns() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("ApiMessage", "content", VISIBLE),
        ("SendMessage", "content", VISIBLE),
        ("TicketText", "content", VISIBLE),
        ("AgentForm", "name", VISIBLE),
        ("AgentForm", "model", ONE_WORD),
        ("AgentForm", "allowedOrigins[]", ORIGIN),
        ("OrganizationUpdate", "name", ONE_LINE),
        ("ProviderKeyForm", "baseUrl", URL_OR_EMPTY),
        // Sent as a request header, which carries visible ASCII only.
        ("ProviderKeyForm", "apiKey", "^[!-~]*$"),
    ]
}

/// Changes that must change something: at least one field, and `null` (the
/// same as leaving a field out) is not a value of the fields listed. Set
/// here because the derive writes `min_properties` as `maxProperties`.
const AT_LEAST_ONE_FIELD: [(&str, &[&str]); 2] = [
    ("OrganizationUpdate", &["name", "slug"]),
    ("TicketUpdate", &["status"]),
];

type Schemas =
    std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>;

fn object<'a>(
    schemas: &'a mut Schemas,
    schema: &str,
) -> Option<&'a mut utoipa::openapi::schema::Object> {
    use utoipa::openapi::{RefOr, schema::Schema};
    match schemas.get_mut(schema) {
        Some(RefOr::T(Schema::Object(object))) => Some(object),
        _ => None,
    }
}

/// The schema of `field`, or of each item of it when written `field[]`.
fn property<'a>(
    schemas: &'a mut Schemas,
    schema: &str,
    field: &str,
) -> Option<&'a mut utoipa::openapi::schema::Object> {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ArrayItems, Schema};
    let (name, items) = match field.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (field, false),
    };
    match (object(schemas, schema)?.properties.get_mut(name), items) {
        (Some(RefOr::T(Schema::Object(property))), false) => Some(property),
        (Some(RefOr::T(Schema::Array(array))), true) => match &mut array.items {
            ArrayItems::RefOrSchema(item) => match item.as_mut() {
                RefOr::T(Schema::Object(item)) => Some(item),
                _ => None,
            },
            ArrayItems::False => None,
        },
        _ => None,
    }
}

/// Names `target` in `missing` when there was nothing to apply a rule to.
fn found(missing: &mut Vec<String>, target: String, applied: Option<()>) {
    if applied.is_none() {
        missing.push(target);
    }
}

/// Lists each field's words as its `enum` (with `null` where it is
/// optional), so a generated client offers exactly what the server takes.
/// Returns the fields it found no property for (none, a test checks).
fn document_choices(doc: &mut utoipa::openapi::OpenApi) -> Vec<String> {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{Schema, SchemaType, Type};
    let mut missing = Vec::new();
    let Some(schemas) = doc.components.as_mut().map(|c| &mut c.schemas) else {
        return vec!["components".into()];
    };
    for (schema, field, words) in choices() {
        let applied = property(schemas, schema, field).map(|property| {
            let optional = matches!(&property.schema_type, SchemaType::Array(types) if types.contains(&Type::Null));
            let mut values: Vec<serde_json::Value> = words.into_iter().map(Into::into).collect();
            if optional {
                values.push(serde_json::Value::Null);
            }
            property.enum_values = Some(values);
        });
        found(&mut missing, format!("{schema}.{field}"), applied);
    }
    for (path, name, words) in parameter_choices() {
        let applied = doc
            .paths
            .paths
            .get_mut(path)
            .and_then(|item| item.get.as_mut())
            .and_then(|op| op.parameters.as_mut())
            .and_then(|params| params.iter_mut().find(|p| p.name == name))
            .and_then(|p| match p.schema.as_mut() {
                Some(RefOr::T(Schema::Object(object))) => Some(object),
                _ => None,
            })
            .map(|object| {
                object.enum_values = Some(words.into_iter().map(Into::into).collect());
            });
        found(&mut missing, format!("GET {path} ?{name}"), applied);
    }
    missing
}

/// Writes the rules the derive cannot: patterns and changes that must
/// change something. Returns what it found no schema or property for.
fn document_rules(doc: &mut utoipa::openapi::OpenApi) -> Vec<String> {
    use utoipa::openapi::schema::{SchemaType, Type};
    let mut missing = Vec::new();
    let Some(schemas) = doc.components.as_mut().map(|c| &mut c.schemas) else {
        return vec!["components".into()];
    };
    for (schema, field, pattern) in patterns() {
        let applied = property(schemas, schema, field).map(|p| p.pattern = Some(pattern.into()));
        found(&mut missing, format!("{schema}.{field}"), applied);
    }
    for (schema, fields) in AT_LEAST_ONE_FIELD {
        let applied = object(schemas, schema).map(|o| {
            o.min_properties = Some(1);
            o.max_properties = None;
        });
        found(&mut missing, schema.to_string(), applied);
        for field in fields {
            let applied = property(schemas, schema, field).map(|p| {
                if let SchemaType::Array(types) = &p.schema_type {
                    let kept: Vec<Type> = types
                        .iter()
                        .filter(|t| **t != Type::Null)
                        .cloned()
                        .collect();
                    p.schema_type = match kept.as_slice() {
                        [one] => SchemaType::Type(one.clone()),
                        _ => SchemaType::Array(kept),
                    };
                }
            });
            found(&mut missing, format!("{schema}.{field}"), applied);
        }
    }
    missing
}

/// Adds the answers any operation of a kind can get where it does not
/// document them itself: a caller's own mistakes are met the same way
/// everywhere (an unreadable body or query, a body too big or not JSON, no
/// or a wrong key, a budget spent), so each operation lists them all.
fn document_common_errors(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorJson")))
                    .build(),
            )
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let public_chat = path.starts_with("/api/v1/chat/");
        let operations = [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.patch, true),
            (&mut item.delete, true),
        ];
        for (operation, writes) in operations {
            let Some(op) = operation.as_mut() else {
                continue;
            };
            let params = op.parameters.iter().flatten();
            let has_path = params
                .clone()
                .any(|p| matches!(p.parameter_in, ParameterIn::Path));
            let has_body = op.request_body.is_some();
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let mut expected: Vec<(&str, &str)> = Vec::new();
            // Any operation refuses a query parameter it does not take.
            expected.push(("400", "The request cannot be read: malformed JSON, a query parameter it does not take or of the wrong type, or a body that is not what its Content-Encoding says"));
            if has_body {
                expected.push(("413", "The body is over the size limit"));
                expected.push(("415", "The body is not JSON (`Content-Type: application/json`), or its Content-Encoding is not gzip, deflate or br"));
                expected.push((
                    "422",
                    "The body does not fit the schema, or a value is out of range",
                ));
            }
            if secured {
                expected.push(("401", "Missing, unknown or revoked credentials"));
                if writes {
                    expected.push(("403", "A read-only key, or a role that does not allow this"));
                }
            }
            if has_path {
                expected.push(("404", "Not found in the caller's organization"));
            }
            if secured || public_chat {
                expected.push((
                    "429",
                    "Over a rate limit: see `Retry-After` and `X-RateLimit-*`",
                ));
            }
            for (status, description) in expected {
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description).into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_field_with_fixed_words_lists_them() {
        let mut doc = super::merged_document();
        assert_eq!(super::document_rules(&mut doc), Vec::<String>::new());
        assert_eq!(super::document_choices(&mut doc), Vec::<String>::new());
        let doc = serde_json::to_value(&doc).unwrap();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["AgentForm"]["properties"]["provider"]["enum"],
            serde_json::json!(["builtin", "openai", "anthropic", null]),
            "an optional field may also be null"
        );
        assert_eq!(
            schemas["TicketUpdate"]["properties"]["status"]["enum"],
            serde_json::json!(["open", "pending", "solved"]),
            "a change that must change something takes no null"
        );
        let status = &doc["paths"]["/api/v1/tickets"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "status")
            .unwrap()["schema"];
        assert_eq!(
            status["enum"],
            serde_json::json!(["", "all", "open", "pending", "solved"])
        );
        assert_eq!(
            schemas["DocumentStatusJson"]["properties"]["status"]["enum"],
            serde_json::json!(["pending", "indexing", "ready", "failed"])
        );
        assert_eq!(
            schemas["MemberUpdate"]["properties"]["role"]["enum"],
            serde_json::json!(["owner", "admin", "agent", "viewer"])
        );
        assert_eq!(
            schemas["ConversationJson"]["properties"]["channel"]["enum"],
            serde_json::json!(["page", "widget", "api"]),
            "what the API lists includes its own conversations"
        );
    }

    #[test]
    fn a_change_must_name_at_least_one_field_and_may_name_all() {
        let mut doc = super::merged_document();
        assert_eq!(super::document_rules(&mut doc), Vec::<String>::new());
        let doc = serde_json::to_value(&doc).unwrap();
        for schema in ["OrganizationUpdate", "TicketUpdate"] {
            let object = &doc["components"]["schemas"][schema];
            assert_eq!(object["minProperties"], 1, "{schema}: {object}");
            assert!(object.get("maxProperties").is_none(), "{schema}: {object}");
        }
        let slug = &doc["components"]["schemas"]["OrganizationUpdate"]["properties"]["slug"];
        assert_eq!(slug["type"], "string", "null changes nothing: {slug}");
    }

    #[test]
    fn links_are_written_as_the_specification_names_their_fields() {
        let doc = &*super::SERVED;
        let links = &doc["paths"]["/api/v1/chat/{org}/{agent}/conversations"]["post"]["responses"]
            ["201"]["links"];
        for name in ["transcript", "send", "escalate"] {
            let link = &links[name];
            assert_eq!(link["operationId"], name, "{link}");
            assert!(link.get("operation_id").is_none(), "{link}");
            assert_eq!(link["parameters"]["id"], "$response.body#/conversationId");
        }
    }
}
