//! What a rule does, ALB's way: forward to one target group or to several by weight (with
//! optional group stickiness), redirect (with `#{protocol}`, `#{host}`, `#{port}`, `#{path}`
//! and `#{query}` templates), or answer with a fixed response.
//!
//! Configuration ([`ActionConfig`]) names target groups; [`Action`] is the compiled form the
//! request path uses, with group indices and prepared headers. Rendering a redirect is a pure
//! function, tested as a table.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

/// The cookie that keeps a client on the target group it was first sent to.
pub const GROUP_STICKINESS_COOKIE: &str = "SCALBTG";

/// The cookie that keeps a client on the target it was first sent to.
pub const TARGET_STICKINESS_COOKIE: &str = "SCALB";

/// The cookie that keeps a client on the target that set its application cookie.
pub const APP_STICKINESS_COOKIE: &str = "SCALBAPP";

/// The content types a fixed response may have, as ALB allows.
pub const FIXED_RESPONSE_CONTENT_TYPES: [&str; 5] = [
    "text/plain",
    "text/css",
    "text/html",
    "application/javascript",
    "application/json",
];

/// The largest body of a fixed response.
pub const MAX_FIXED_RESPONSE_BODY: usize = 1024;

/// An action as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionConfig {
    /// Send the request to a target group.
    Forward(ForwardConfig),
    /// Answer with a redirect.
    Redirect(RedirectConfig),
    /// Answer with a fixed response.
    FixedResponse(FixedResponseConfig),
}

impl ActionConfig {
    /// Forward everything to one group.
    pub fn forward(group: &str) -> Self {
        ActionConfig::Forward(ForwardConfig {
            target_groups: vec![WeightedGroup {
                name: group.to_owned(),
                weight: 1,
            }],
            stickiness: None,
            max_body_bytes: None,
            url_rewrite: None,
            host_rewrite: None,
        })
    }
}

/// Forward to target groups by weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// The groups and their weights (0 to 999; a group of weight 0 gets no new clients).
    pub target_groups: Vec<WeightedGroup>,
    /// How long a client stays on the group it was sent to; none means no stickiness.
    pub stickiness: Option<Duration>,
    /// The largest request body this forward accepts (more: 413); none: the listener's.
    pub max_body_bytes: Option<u64>,
    /// Rewrites the URL the target is sent (ALB's `url-rewrite` transform).
    pub url_rewrite: Option<RewriteConfig>,
    /// Rewrites the `Host` the target is sent (ALB's `host-header-rewrite` transform).
    pub host_rewrite: Option<RewriteConfig>,
}

/// A rewrite of what a forwarded request's target is sent, after the rules chose it (ALB's
/// rule transforms): the first match of `regex` replaced by `replace`, in which `$1` or
/// `${name}` stand for the match's groups. A request it does not match goes on as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteConfig {
    /// The expression (the `regex` crate's syntax).
    pub regex: String,
    /// The replacement.
    pub replace: String,
}

/// A compiled rewrite.
#[derive(Debug, Clone)]
pub struct Rewrite {
    regex: regex::Regex,
    replace: String,
}

impl Rewrite {
    /// Compiles a rewrite.
    pub fn new(config: &RewriteConfig) -> Result<Self, ActionError> {
        let regex = regex::RegexBuilder::new(&config.regex)
            // An operator's expression over a URL or a host: bounded, as ALB's are.
            .size_limit(1 << 20)
            .build()
            .map_err(|error| ActionError::Rewrite(error.to_string()))?;
        Ok(Self {
            regex,
            replace: config.replace.clone(),
        })
    }

    /// `text` rewritten, or `None` when the expression does not match it.
    pub fn apply(&self, text: &str) -> Option<String> {
        match self.regex.replace(text, self.replace.as_str()) {
            std::borrow::Cow::Owned(rewritten) => Some(rewritten),
            std::borrow::Cow::Borrowed(_) => None,
        }
    }
}

/// A target group and its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedGroup {
    /// The group's name.
    pub name: String,
    /// Its weight.
    pub weight: u32,
}

/// A redirect. Each part is a template in which `#{protocol}`, `#{host}`, `#{port}`,
/// `#{path}` (without its leading `/`) and `#{query}` stand for the request's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectConfig {
    /// 301 or 302.
    pub status: u16,
    /// `http`, `https` or `#{protocol}`.
    pub protocol: String,
    /// The host.
    pub host: String,
    /// The port.
    pub port: String,
    /// The path, starting with `/`.
    pub path: String,
    /// The query, without `?`.
    pub query: String,
}

impl Default for RedirectConfig {
    /// ALB's defaults: every part kept, 301.
    fn default() -> Self {
        Self {
            status: 301,
            protocol: "#{protocol}".to_owned(),
            host: "#{host}".to_owned(),
            port: "#{port}".to_owned(),
            path: "/#{path}".to_owned(),
            query: "#{query}".to_owned(),
        }
    }
}

/// A fixed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedResponseConfig {
    /// The status: 2xx, 4xx or 5xx.
    pub status: u16,
    /// One of [`FIXED_RESPONSE_CONTENT_TYPES`].
    pub content_type: String,
    /// At most [`MAX_FIXED_RESPONSE_BODY`] bytes.
    pub body: String,
}

/// Why an action is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// A forward names a group that does not exist.
    #[error("target group `{0}` does not exist")]
    UnknownTargetGroup(String),
    /// A forward has no group, more than five, a weight over 999, or only zero weights.
    #[error(
        "a forward lists 1 to 5 target groups with weights from 0 to 999, at least one above 0"
    )]
    Weights,
    /// A stickiness duration is outside 1 second to 7 days.
    #[error("group stickiness lasts from 1 second to 7 days")]
    Stickiness,
    /// A redirect is not valid.
    #[error("redirect: {0}")]
    Redirect(&'static str),
    /// A fixed response is not valid.
    #[error("fixed response: {0}")]
    FixedResponse(&'static str),
    /// A rewrite's expression is not valid.
    #[error("rewrite: {0}")]
    Rewrite(String),
}

/// A compiled action.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward.
    Forward(Forward),
    /// Redirect.
    Redirect(RedirectConfig, StatusCode),
    /// Fixed response.
    FixedResponse {
        /// The status.
        status: StatusCode,
        /// The content type.
        content_type: HeaderValue,
        /// The body.
        body: Bytes,
    },
}

/// A compiled forward.
#[derive(Debug, Clone)]
pub struct Forward {
    /// (group index, weight, group name).
    pub groups: Vec<(usize, u32, String)>,
    /// The sum of the weights.
    pub total_weight: u32,
    /// Group stickiness.
    pub stickiness: Option<Duration>,
    /// The largest request body.
    pub max_body_bytes: Option<u64>,
    /// The URL's rewrite.
    pub url_rewrite: Option<Rewrite>,
    /// The `Host`'s rewrite.
    pub host_rewrite: Option<Rewrite>,
}

impl Forward {
    /// The group a request's stickiness cookie names, when the rule's groups are sticky
    /// (only then is the cookie read).
    pub fn sticky_group<'h>(&self, request: &'h http::HeaderMap) -> Option<&'h str> {
        self.stickiness?;
        securecart_cache::key::cookie(request, GROUP_STICKINESS_COOKIE)
    }

    /// The group for a request: the one its stickiness cookie names (if it still takes new
    /// clients), else one drawn by weight from `draw` (0 ≤ draw < total weight).
    pub fn choose(&self, sticky_group: Option<&str>, draw: u32) -> usize {
        if self.stickiness.is_some()
            && let Some(name) = sticky_group
            && let Some((index, _, _)) = self
                .groups
                .iter()
                .find(|(_, weight, group)| *weight > 0 && group == name)
        {
            return *index;
        }
        let mut left = draw;
        for (index, weight, _) in &self.groups {
            if left < *weight {
                return *index;
            }
            left -= weight;
        }
        self.groups.first().map_or(0, |(index, _, _)| *index)
    }
}

impl Action {
    /// Compiles a configured action; `group_index` finds a target group by name.
    pub fn compile(
        config: &ActionConfig,
        group_index: impl Fn(&str) -> Option<usize>,
    ) -> Result<Self, ActionError> {
        match config {
            ActionConfig::Forward(forward) => {
                if forward.target_groups.is_empty()
                    || forward.target_groups.len() > 5
                    || forward.target_groups.iter().any(|group| group.weight > 999)
                    || forward.target_groups.iter().all(|group| group.weight == 0)
                {
                    return Err(ActionError::Weights);
                }
                if forward.stickiness.is_some_and(|duration| {
                    duration < Duration::from_secs(1)
                        || duration > Duration::from_secs(7 * 24 * 3600)
                }) {
                    return Err(ActionError::Stickiness);
                }
                let groups = forward
                    .target_groups
                    .iter()
                    .map(|group| {
                        group_index(&group.name)
                            .map(|index| (index, group.weight, group.name.clone()))
                            .ok_or_else(|| ActionError::UnknownTargetGroup(group.name.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Action::Forward(Forward {
                    total_weight: groups.iter().map(|(_, weight, _)| weight).sum(),
                    groups,
                    stickiness: forward.stickiness,
                    max_body_bytes: forward.max_body_bytes,
                    url_rewrite: forward.url_rewrite.as_ref().map(Rewrite::new).transpose()?,
                    host_rewrite: forward
                        .host_rewrite
                        .as_ref()
                        .map(Rewrite::new)
                        .transpose()?,
                }))
            }
            ActionConfig::Redirect(redirect) => {
                let status = match redirect.status {
                    301 => StatusCode::MOVED_PERMANENTLY,
                    302 => StatusCode::FOUND,
                    _ => return Err(ActionError::Redirect("the status is 301 or 302")),
                };
                if !matches!(
                    redirect.protocol.to_ascii_lowercase().as_str(),
                    "http" | "https" | "#{protocol}"
                ) {
                    return Err(ActionError::Redirect(
                        "the protocol is http, https or #{protocol}",
                    ));
                }
                if !redirect.path.starts_with('/') {
                    return Err(ActionError::Redirect("the path starts with `/`"));
                }
                if redirect.host.is_empty() || redirect.port.is_empty() {
                    return Err(ActionError::Redirect("the host and the port are not empty"));
                }
                // Every part kept: the client would be sent where it is, for ever (ALB
                // refuses such a redirect too).
                let keeps = RedirectConfig::default();
                if redirect.protocol.eq_ignore_ascii_case(&keeps.protocol)
                    && redirect.host == keeps.host
                    && redirect.port == keeps.port
                    && redirect.path == keeps.path
                    && redirect.query == keeps.query
                {
                    return Err(ActionError::Redirect(
                        "it changes at least one of protocol, host, port, path and query (else it loops)",
                    ));
                }
                let mut redirect = redirect.clone();
                redirect.protocol = redirect.protocol.to_ascii_lowercase();
                Ok(Action::Redirect(redirect, status))
            }
            ActionConfig::FixedResponse(fixed) => {
                let status = StatusCode::from_u16(fixed.status)
                    .ok()
                    .filter(|status| {
                        status.is_success() || status.is_client_error() || status.is_server_error()
                    })
                    .ok_or(ActionError::FixedResponse("the status is 2xx, 4xx or 5xx"))?;
                if !FIXED_RESPONSE_CONTENT_TYPES.contains(&fixed.content_type.as_str()) {
                    return Err(ActionError::FixedResponse(
                        "the content type is text/plain, text/css, text/html, application/javascript or application/json",
                    ));
                }
                if fixed.body.len() > MAX_FIXED_RESPONSE_BODY {
                    return Err(ActionError::FixedResponse("the body is at most 1024 bytes"));
                }
                Ok(Action::FixedResponse {
                    status,
                    content_type: HeaderValue::from_str(&fixed.content_type).map_err(|_| {
                        ActionError::FixedResponse("the content type is not a header value")
                    })?,
                    body: Bytes::from(fixed.body.clone()),
                })
            }
        }
    }
}

/// The parts of the request a redirect may reuse.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// `http` or `https`.
    pub protocol: &'a str,
    /// The host, without a port.
    pub host: &'a str,
    /// The listener's port.
    pub port: u16,
    /// The path, with its leading `/`.
    pub path: &'a str,
    /// The query, without `?`.
    pub query: Option<&'a str>,
}

fn render(template: &str, request: &RequestParts<'_>, port: &str) -> String {
    template
        .replace("#{protocol}", request.protocol)
        .replace("#{host}", request.host)
        .replace("#{port}", port)
        .replace(
            "#{path}",
            request.path.strip_prefix('/').unwrap_or(request.path),
        )
        .replace("#{query}", request.query.unwrap_or(""))
}

/// The `Location` of a redirect: default ports are left out, and so is an empty query.
pub fn redirect_location(redirect: &RedirectConfig, request: &RequestParts<'_>) -> String {
    let port = request.port.to_string();
    let protocol = render(&redirect.protocol, request, &port);
    let host = render(&redirect.host, request, &port);
    let port = render(&redirect.port, request, &port);
    let path = render(&redirect.path, request, &port);
    let query = render(&redirect.query, request, &port);
    let default_port = matches!(
        (protocol.as_str(), port.as_str()),
        ("http", "80") | ("https", "443")
    );
    let mut location = format!("{protocol}://{host}");
    if !default_port {
        location.push(':');
        location.push_str(&port);
    }
    location.push_str(&path);
    if !query.is_empty() {
        location.push('?');
        location.push_str(&query);
    }
    location
}

#[cfg(test)]
mod tests {
    use super::{
        Action, ActionConfig, ActionError, FixedResponseConfig, ForwardConfig, RedirectConfig,
        RequestParts, WeightedGroup, redirect_location,
    };

    #[test]
    fn redirects_render_their_templates() {
        let request = RequestParts {
            protocol: "http",
            host: "shop.example",
            port: 8080,
            path: "/cart/items",
            query: Some("a=1"),
        };
        let default = RedirectConfig::default();
        let https = RedirectConfig {
            protocol: "https".into(),
            port: "443".into(),
            ..RedirectConfig::default()
        };
        let moved = RedirectConfig {
            host: "www.#{host}".into(),
            path: "/new/#{path}".into(),
            query: "from=old&#{query}".into(),
            ..RedirectConfig::default()
        };
        let port_80 = RequestParts {
            port: 80,
            query: None,
            ..request
        };
        let cases = [
            (&default, request, "http://shop.example:8080/cart/items?a=1"),
            (&https, request, "https://shop.example/cart/items?a=1"),
            (
                &moved,
                request,
                "http://www.shop.example:8080/new/cart/items?from=old&a=1",
            ),
            (&default, port_80, "http://shop.example/cart/items"),
        ];
        for (redirect, request, expected) in cases {
            assert_eq!(redirect_location(redirect, &request), expected);
        }
    }

    #[test]
    fn weighted_forwards_follow_their_weights_and_stickiness() {
        let config = ActionConfig::Forward(ForwardConfig {
            target_groups: vec![
                WeightedGroup {
                    name: "blue".into(),
                    weight: 90,
                },
                WeightedGroup {
                    name: "green".into(),
                    weight: 10,
                },
                WeightedGroup {
                    name: "old".into(),
                    weight: 0,
                },
            ],
            stickiness: Some(std::time::Duration::from_secs(60)),
            max_body_bytes: None,
            url_rewrite: None,
            host_rewrite: None,
        });
        let index = |name: &str| {
            ["blue", "green", "old"]
                .iter()
                .position(|group| *group == name)
        };
        let Ok(Action::Forward(forward)) = Action::compile(&config, index) else {
            panic!("compiles");
        };
        assert_eq!(forward.total_weight, 100);
        // (cookie, draw, chosen group)
        let cases = [
            (None, 0, 0),
            (None, 89, 0),
            (None, 90, 1),
            (None, 99, 1),
            (Some("green"), 0, 1),
            (Some("blue"), 95, 0),
            // A group of weight 0 takes no new clients, sticky or not.
            (Some("old"), 95, 1),
            (Some("unknown"), 5, 0),
        ];
        for (cookie, draw, expected) in cases {
            assert_eq!(forward.choose(cookie, draw), expected, "{cookie:?} {draw}");
        }
    }

    #[test]
    fn invalid_actions_are_refused() {
        let index = |name: &str| (name == "web").then_some(0);
        let forward = |groups: Vec<(&str, u32)>| {
            ActionConfig::Forward(ForwardConfig {
                target_groups: groups
                    .into_iter()
                    .map(|(name, weight)| WeightedGroup {
                        name: name.into(),
                        weight,
                    })
                    .collect(),
                stickiness: None,
                max_body_bytes: None,
                url_rewrite: None,
                host_rewrite: None,
            })
        };
        let cases = [
            (
                forward(vec![("nope", 1)]),
                ActionError::UnknownTargetGroup("nope".into()),
            ),
            (forward(vec![("web", 0)]), ActionError::Weights),
            (forward(vec![("web", 1000)]), ActionError::Weights),
            (forward(vec![]), ActionError::Weights),
            (
                ActionConfig::Redirect(RedirectConfig {
                    status: 307,
                    ..RedirectConfig::default()
                }),
                ActionError::Redirect("the status is 301 or 302"),
            ),
            (
                ActionConfig::Redirect(RedirectConfig {
                    protocol: "ftp".into(),
                    ..RedirectConfig::default()
                }),
                ActionError::Redirect("the protocol is http, https or #{protocol}"),
            ),
            (
                ActionConfig::Redirect(RedirectConfig::default()),
                ActionError::Redirect(
                    "it changes at least one of protocol, host, port, path and query (else it loops)",
                ),
            ),
            (
                ActionConfig::FixedResponse(FixedResponseConfig {
                    status: 302,
                    content_type: "text/plain".into(),
                    body: String::new(),
                }),
                ActionError::FixedResponse("the status is 2xx, 4xx or 5xx"),
            ),
            (
                ActionConfig::FixedResponse(FixedResponseConfig {
                    status: 200,
                    content_type: "image/png".into(),
                    body: String::new(),
                }),
                ActionError::FixedResponse(
                    "the content type is text/plain, text/css, text/html, application/javascript or application/json",
                ),
            ),
            (
                ActionConfig::FixedResponse(FixedResponseConfig {
                    status: 200,
                    content_type: "text/plain".into(),
                    body: "x".repeat(1025),
                }),
                ActionError::FixedResponse("the body is at most 1024 bytes"),
            ),
        ];
        for (config, expected) in cases {
            assert_eq!(
                Action::compile(&config, index).err(),
                Some(expected),
                "{config:?}"
            );
        }
    }
}
