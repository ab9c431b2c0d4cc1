//! Which handler a resource request goes to, and the verb authorization sees.

use http::Method;

use crate::api::{Api, Call, Reply};
use crate::error::ApiError;
use crate::resource::Source;
use crate::{metrics, read, review, watch, write};

/// The Kubernetes verb of a request: `get`, `list`, `watch`, `create`, `update`, `patch`,
/// `delete` or `deletecollection`.
pub fn verb(call: &Call<'_>) -> &'static str {
    let named = call.target.name.is_some();
    // Running a command is a write whatever the method (kube-apiserver asks for `create` on
    // `pods/exec` for WebSocket GETs too): a reader must not get a shell.
    if matches!(call.target.subresource, Some("exec" | "attach" | "portforward")) {
        return "create";
    }
    match call.method {
        Method::GET | Method::HEAD if call.query.watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

pub async fn dispatch(api: &Api, call: &Call<'_>) -> Result<Reply, ApiError> {
    let target = &call.target;
    match target.resource.source {
        Source::Store => {}
        Source::Review if call.method == Method::POST => return review::create(call),
        Source::Review => return Err(not_allowed(call)),
        Source::Metrics => return metrics::serve(api, call).await,
    }
    let name = target.name;
    match (&call.method, name, target.subresource) {
        (&Method::GET, _, None) if call.query.watch => watch::watch(api, call).await,
        (&Method::GET, None, None) => read::list(api, call).await,
        (&Method::GET, Some(_), None | Some("status")) => read::get(api, call).await,
        (&Method::GET, Some(_), Some("scale")) => write::get_scale(api, call).await,
        (&Method::GET, Some(_), Some("log")) => crate::node_proxy::pod_log(api, call).await,
        (&Method::GET | &Method::POST, Some(_), Some("exec")) => crate::node_proxy::pod_exec(api, call).await,
        (&Method::POST, None, None) => write::create(api, call).await,
        (&Method::POST, Some(_), Some("binding")) => write::bind(api, call).await,
        (&Method::POST, Some(_), Some("eviction")) => write::evict(api, call).await,
        (&Method::PUT, Some(_), None | Some("status") | Some("finalize")) => write::update(api, call).await,
        (&Method::PUT, Some(_), Some("scale")) => write::update_scale(api, call).await,
        (&Method::PATCH, Some(_), None | Some("status")) => write::patch(api, call).await,
        (&Method::PATCH, Some(_), Some("scale")) => write::patch_scale(api, call).await,
        (&Method::DELETE, Some(_), None) => write::delete(api, call).await,
        (&Method::DELETE, None, None) => write::delete_collection(api, call).await,
        _ => Err(not_allowed(call)),
    }
}

fn not_allowed(call: &Call<'_>) -> ApiError {
    ApiError::MethodNotAllowed {
        message: format!(
            "the server does not allow this method on the requested resource ({} {})",
            call.method,
            call.target.resource.qualified_plural()
        ),
    }
}
