//! SelfSubjectAccessReview: "may I?", answered by the same authorizer that guards requests.

use http::StatusCode;
use serde_json::{Value, json};

use crate::admit;
use crate::api::{Call, Reply};
use crate::auth::{self, Attributes};
use crate::error::ApiError;

pub fn create(call: &Call<'_>) -> Result<Reply, ApiError> {
    let resource = call.target.resource;
    let mut review = admit::body_object(call)?;
    admit::check_type(resource, &mut review)?;
    let mut warnings = Vec::new();
    let mut review = admit::normalize(resource, review, admit::FieldValidation::Ignore, &mut warnings)?;
    let attributes = review.pointer("/spec/resourceAttributes").cloned();
    let non_resource = review.pointer("/spec/nonResourceAttributes").cloned();
    let field = |value: &Option<Value>, name: &str| -> String {
        value.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str).unwrap_or("").to_owned()
    };
    let allowed = match (&attributes, &non_resource) {
        (Some(_), _) => {
            let (verb, group, resource, subresource) = (
                field(&attributes, "verb"),
                field(&attributes, "group"),
                field(&attributes, "resource"),
                field(&attributes, "subresource"),
            );
            let (namespace, name) = (field(&attributes, "namespace"), field(&attributes, "name"));
            let attributes = Attributes {
                verb: &verb,
                group: &group,
                resource: if resource.is_empty() { "*" } else { &resource },
                subresource: &subresource,
                namespace: &namespace,
                name: &name,
                object: None,
            };
            auth::authorize(&call.user, &attributes)
        }
        (None, Some(_)) => true,
        (None, None) => {
            return Err(ApiError::bad_request(
                "spec: one of resourceAttributes or nonResourceAttributes must be set",
            ));
        }
    };
    review["status"] = json!({"allowed": allowed});
    if !allowed {
        review["status"]["reason"] = json!("no shoal role allows it");
    }
    Ok(Reply::with_code(StatusCode::CREATED, review))
}
