//! The event model: API Gateway WebSocket events, as Lambda receives them.
//!
//! The local server builds the same events, so one dispatcher serves both.

pub use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse as WebSocketResponse, ApiGatewayWebsocketProxyRequest as WebSocketEvent,
};

/// Which of the three WebSocket routes an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `$connect`.
    Connect,
    /// `$disconnect`.
    Disconnect,
    /// `$default` (or any custom route key): a message from the client.
    Message,
}

impl Route {
    /// Reads the route from `requestContext.routeKey`, falling back to `eventType`.
    pub fn of(event: &WebSocketEvent) -> Route {
        let ctx = &event.request_context;
        match (ctx.route_key.as_deref(), ctx.event_type.as_deref()) {
            (Some("$connect"), _) | (None, Some("CONNECT")) => Route::Connect,
            (Some("$disconnect"), _) | (None, Some("DISCONNECT")) => Route::Disconnect,
            _ => Route::Message,
        }
    }
}

/// The parts of the request context that handlers may want.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// The caller's connection id.
    pub connection_id: String,
    /// The API id (`requestContext.apiId`).
    pub api_id: Option<String>,
    /// The stage (`requestContext.stage`).
    pub stage: Option<String>,
    /// The domain name the client connected to.
    pub domain_name: Option<String>,
    /// The request id, for logs.
    pub request_id: Option<String>,
    /// The route key API Gateway selected.
    pub route_key: Option<String>,
}

impl RequestInfo {
    /// Extracts the request info; `None` when the event carries no connection id.
    pub fn of(event: &WebSocketEvent) -> Option<RequestInfo> {
        let ctx = &event.request_context;
        Some(RequestInfo {
            connection_id: ctx.connection_id.clone()?,
            api_id: ctx.apiid.clone(),
            stage: ctx.stage.clone(),
            domain_name: ctx.domain_name.clone(),
            request_id: ctx.request_id.clone(),
            route_key: ctx.route_key.clone(),
        })
    }
}

/// A response with the given status and no body.
pub fn response(status: i64) -> WebSocketResponse {
    let mut r = WebSocketResponse::default();
    r.status_code = status;
    r
}

/// Builds events the way API Gateway does, for the local server and tests.
#[derive(Debug, Clone)]
pub struct EventBuilder {
    /// `requestContext.apiId`.
    pub api_id: String,
    /// `requestContext.stage`.
    pub stage: String,
    /// `requestContext.domainName`.
    pub domain_name: String,
}

impl Default for EventBuilder {
    fn default() -> Self {
        EventBuilder {
            api_id: "local".into(),
            stage: "local".into(),
            domain_name: "127.0.0.1".into(),
        }
    }
}

impl EventBuilder {
    fn base(
        &self,
        connection_id: &str,
        route: &str,
        kind: &str,
        connected_at: i64,
    ) -> WebSocketEvent {
        let now = crate::clock::now_ms();
        let mut event = WebSocketEvent::default();
        let ctx = &mut event.request_context;
        ctx.route_key = Some(route.into());
        ctx.event_type = Some(kind.into());
        ctx.connection_id = Some(connection_id.into());
        ctx.apiid = Some(self.api_id.clone());
        ctx.stage = Some(self.stage.clone());
        ctx.domain_name = Some(self.domain_name.clone());
        ctx.message_direction = Some("IN".into());
        ctx.connected_at = connected_at;
        ctx.request_time_epoch = now;
        ctx.request_id = Some(format!("{connection_id}-{now}"));
        event
    }

    /// A `$connect` event.
    pub fn connect(&self, connection_id: &str, connected_at: i64) -> WebSocketEvent {
        self.base(connection_id, "$connect", "CONNECT", connected_at)
    }

    /// A `$connect` event carrying the upgrade request's headers and query string, as API
    /// Gateway passes them to `$connect`.
    pub fn connect_with(
        &self,
        connection_id: &str,
        connected_at: i64,
        headers: aws_lambda_events::http::HeaderMap,
        query: std::collections::HashMap<String, String>,
    ) -> WebSocketEvent {
        let mut event = self.connect(connection_id, connected_at);
        event.headers = headers;
        event.query_string_parameters = query.into();
        event
    }

    /// A `$default` event carrying `body`.
    pub fn message(&self, connection_id: &str, connected_at: i64, body: &str) -> WebSocketEvent {
        let mut event = self.base(connection_id, "$default", "MESSAGE", connected_at);
        event.body = Some(body.to_owned());
        event
    }

    /// A `$disconnect` event.
    pub fn disconnect(
        &self,
        connection_id: &str,
        connected_at: i64,
        status: Option<u16>,
        reason: &str,
    ) -> WebSocketEvent {
        let mut event = self.base(connection_id, "$disconnect", "DISCONNECT", connected_at);
        event.request_context.disconnect_status_code = status.map(i64::from);
        event.request_context.disconnect_reason = Some(reason.to_owned());
        event
    }
}
