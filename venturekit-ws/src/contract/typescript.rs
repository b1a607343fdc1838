//! `client.ts`: a typed TypeScript client generated from the contract, without runtime
//! dependencies (it takes a WebSocket constructor: the browser's, Deno's, or Node's `ws`).

use super::builtin::ERROR_CODES;
use super::document::Contract;
use serde_json::Value;
use std::fmt::Write;

/// A TypeScript type for a JSON Schema (the subset schemars and the framework produce).
pub(super) fn ts_type(schema: &Value, depth: usize) -> String {
    let Value::Object(object) = schema else {
        return match schema {
            Value::Bool(false) => "never".into(),
            _ => "unknown".into(),
        };
    };
    if depth > 24 {
        return "unknown".into();
    }
    if let Some(value) = object.get("const") {
        return literal(value);
    }
    if let Some(Value::Array(values)) = object.get("enum") {
        return union(values.iter().map(literal).collect());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(branches)) = object.get(key) {
            return union(branches.iter().map(|b| ts_type(b, depth + 1)).collect());
        }
    }
    if let Some(Value::Array(parts)) = object.get("allOf") {
        let parts: Vec<String> = parts
            .iter()
            .map(|p| format!("({})", ts_type(p, depth + 1)))
            .collect();
        return parts.join(" & ");
    }
    match object.get("type") {
        Some(Value::Array(types)) => union(
            types
                .iter()
                .map(|t| {
                    let mut single = object.clone();
                    single.insert("type".into(), t.clone());
                    ts_type(&Value::Object(single), depth + 1)
                })
                .collect(),
        ),
        Some(Value::String(t)) => match t.as_str() {
            "string" => "string".into(),
            "integer" | "number" => "number".into(),
            "boolean" => "boolean".into(),
            "null" => "null".into(),
            "array" => array_type(object, depth),
            "object" => object_type(object, depth),
            _ => "unknown".into(),
        },
        _ if object.contains_key("properties") => object_type(object, depth),
        _ => "unknown".into(),
    }
}

fn array_type(object: &serde_json::Map<String, Value>, depth: usize) -> String {
    match object.get("items") {
        Some(Value::Array(items)) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| ts_type(i, depth + 1))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(items) => format!("Array<{}>", ts_type(items, depth + 1)),
        None => "unknown[]".into(),
    }
}

fn object_type(object: &serde_json::Map<String, Value>, depth: usize) -> String {
    let pad = "  ".repeat(depth + 1);
    let required: Vec<&str> = match object.get("required") {
        Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut text = String::from("{");
    let mut any = false;
    if let Some(Value::Object(properties)) = object.get("properties") {
        for (name, schema) in properties {
            any = true;
            let optional = if required.contains(&name.as_str()) {
                ""
            } else {
                "?"
            };
            let _ = write!(
                text,
                "\n{pad}{}{optional}: {};",
                property_name(name),
                ts_type(schema, depth + 1)
            );
        }
    }
    let extra = match object.get("additionalProperties") {
        Some(Value::Bool(false)) => None,
        Some(Value::Object(schema)) if !schema.is_empty() => {
            Some(ts_type(&Value::Object(schema.clone()), depth + 1))
        }
        _ => Some("unknown".to_owned()),
    };
    match (any, extra) {
        (false, Some(extra)) => return format!("{{ [key: string]: {extra} }}"),
        (false, None) => return "Record<string, never>".into(),
        // Further fields, when declared: typed `unknown`, so the named ones keep their types.
        _ if matches!(
            object.get("additionalProperties"),
            Some(Value::Bool(true)) | Some(Value::Object(_))
        ) =>
        {
            let _ = write!(text, "\n{pad}[key: string]: unknown;");
        }
        _ => {}
    }
    let _ = write!(text, "\n{}}}", "  ".repeat(depth));
    text
}

fn property_name(name: &str) -> String {
    let identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if identifier {
        name.to_owned()
    } else {
        Value::String(name.to_owned()).to_string()
    }
}

fn literal(value: &Value) -> String {
    match value {
        Value::Object(_) | Value::Array(_) => "unknown".into(),
        other => other.to_string(),
    }
}

fn union(mut parts: Vec<String>) -> String {
    parts.dedup();
    match parts.len() {
        0 => "never".into(),
        1 => parts.remove(0),
        _ => parts
            .iter()
            .map(|p| {
                if p.contains(" & ") {
                    format!("({p})")
                } else {
                    p.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

const RUNTIME: &str = r#"
/** A `ref`: correlates a message with its one terminal reply. */
export type Ref = string | number;

/** Removes the envelope fields (`action`, `ref`) from each member of a union. */
export type WithoutEnvelope<T> = T extends unknown ? Omit<T, "action" | "ref"> : never;

/** What the client needs of a WebSocket: the browser's, Deno's, or Node's `ws` package. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** A WebSocket constructor (`WebSocket` in browsers and Deno, `require("ws")` in Node). */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Options of {@link connect}. */
export interface ClientOptions {
  /** The WebSocket constructor; defaults to `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** How long a request waits for its reply, in milliseconds (default 10 000). */
  timeoutMs?: number;
}

/** A refused or failed request: `code` is the server's error code, or `timeout`/`closed`. */
export class VkError extends Error {
  readonly code: ErrorCode | "timeout" | "closed";
  readonly requestAction: string | null;
  readonly frame: unknown;
  constructor(code: ErrorCode | "timeout" | "closed", message: string, requestAction: string | null, frame: unknown) {
    super(`${code}: ${message}`);
    this.name = "VkError";
    this.code = code;
    this.requestAction = requestAction;
    this.frame = frame;
  }
}

declare function setTimeout(handler: () => void, ms: number): unknown;
declare function clearTimeout(handle: unknown): void;

interface Pending {
  action: string;
  resolve(frame: any): void;
  reject(error: VkError): void;
  timer: unknown;
}

type Handler = (frame: any) => void;

/** One connection. Create it with {@link connect}. */
export class Client {
  private readonly socket: WebSocketLike;
  private readonly timeoutMs: number;
  private readonly pending = new Map<Ref, Pending>();
  private readonly handlers = new Map<string, Set<Handler>>();
  private readonly closeHandlers = new Set<(code: number, reason: string) => void>();
  private nextRef = 1;

  /** Use {@link connect}. */
  constructor(socket: WebSocketLike, timeoutMs: number) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    socket.onmessage = (event: any) => this.receive(String(event.data));
    socket.onclose = (event: any) => {
      const code = typeof event?.code === "number" ? event.code : 1006;
      const reason = typeof event?.reason === "string" ? event.reason : "";
      for (const [ref, request] of this.pending) {
        clearTimeout(request.timer);
        request.reject(new VkError("closed", `the connection closed (${code})`, request.action, null));
        this.pending.delete(ref);
      }
      for (const handler of this.closeHandlers) handler(code, reason);
    };
  }

  /** Authenticates the connection; resolves with the `auth` success frame. */
  auth(token: string, tenantId?: string): Promise<AuthSuccess> {
    const message: Record<string, unknown> = { token };
    if (tenantId !== undefined) message.tenantId = tenantId;
    return this.send("auth", message);
  }

  /** Sends `action` with a fresh `ref`; resolves with its typed reply, rejects with a {@link VkError}. */
  request<A extends keyof Actions>(
    action: A,
    message: WithoutEnvelope<Actions[A]["message"]>,
    options: { timeoutMs?: number } = {},
  ): Promise<Actions[A]["reply"]> {
    return this.send(action as string, message as Record<string, unknown>, options.timeoutMs);
  }

  /** Calls `handler` for every pushed frame with this `action`; returns an unsubscribe function. */
  on<P extends keyof Pushes>(action: P, handler: (frame: Pushes[P]) => void): () => void {
    const key = action as string;
    let set = this.handlers.get(key);
    if (set === undefined) {
      set = new Set();
      this.handlers.set(key, set);
    }
    set.add(handler as Handler);
    return () => {
      set?.delete(handler as Handler);
    };
  }

  /** Calls `handler` when the connection closes. */
  onClose(handler: (code: number, reason: string) => void): () => void {
    this.closeHandlers.add(handler);
    return () => {
      this.closeHandlers.delete(handler);
    };
  }

  /** Closes the connection. */
  close(code = 1000, reason = ""): void {
    this.socket.close(code, reason);
  }
__TOPICS__
  private send(action: string, message: Record<string, unknown>, timeoutMs?: number): Promise<any> {
    const ref = `vk-${this.nextRef++}`;
    const frame = JSON.stringify({ ...message, action, ref });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new VkError("timeout", `no reply to ${action} within ${timeoutMs ?? this.timeoutMs} ms`, action, null));
      }, timeoutMs ?? this.timeoutMs);
      this.pending.set(ref, { action, resolve, reject, timer });
      try {
        this.socket.send(frame);
      } catch (error) {
        clearTimeout(timer);
        this.pending.delete(ref);
        reject(new VkError("closed", String(error), action, null));
      }
    });
  }

  private receive(text: string): void {
    let frame: any;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    const ref = frame.ref as Ref | undefined;
    const request = ref === undefined ? undefined : this.pending.get(ref);
    if (ref !== undefined && request !== undefined) {
      this.pending.delete(ref);
      clearTimeout(request.timer);
      const failed = frame.action === "error" || (frame.action === "auth" && frame.success === false);
      if (failed) {
        const error = frame.error ?? {};
        request.reject(new VkError(error.code, String(error.message ?? ""), frame.requestAction ?? request.action, frame));
      } else {
        request.resolve(frame);
      }
      return;
    }
    const handlers = this.handlers.get(String(frame.action));
    if (handlers !== undefined) for (const handler of handlers) handler(frame);
  }
}

/** Opens a connection to `url` (`ws://…` or `wss://…`) and resolves once it is open. */
export function connect(url: string, options: ClientOptions = {}): Promise<Client> {
  const Socket = options.WebSocket ?? ((globalThis as any).WebSocket as WebSocketConstructor | undefined);
  if (Socket === undefined) {
    return Promise.reject(new Error("no WebSocket: pass options.WebSocket (in Node: the `ws` package)"));
  }
  const socket = new Socket(url);
  return new Promise((resolve, reject) => {
    socket.onopen = () => resolve(new Client(socket, options.timeoutMs ?? 10000));
    socket.onerror = (event: any) => reject(new Error(`could not connect to ${url}: ${event?.message ?? "error"}`));
  });
}
"#;

const TOPICS: &str = r#"
  /** Joins a topic (`vk:join`), with presence metadata; presence frames arrive through {@link Client.on}. */
  join(topic: string, meta?: Record<string, unknown>): Promise<Actions["vk:join"]["reply"]> {
    const message: Record<string, unknown> = { topic };
    if (meta !== undefined) message.meta = meta;
    return this.send("vk:join", message);
  }

  /** Leaves a topic (`vk:leave`). */
  leave(topic: string): Promise<Actions["vk:leave"]["reply"]> {
    return this.send("vk:leave", { topic });
  }
"#;

impl Contract {
    /// The TypeScript client (`client.ts`).
    pub fn typescript(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "// The {} WebSocket API client (version {}), generated by venturekit-ws from the\n// server's Rust types with `contract --out DIR`. Do not edit: regenerate.\n//\n// import {{ connect }} from \"./client\";\n// const client = await connect(\"wss://…\", {{ WebSocket }}); // Node: import WebSocket from \"ws\"\n// await client.auth(token);\n// const reply = await client.request(\"<action>\", {{ … }});\n/* eslint-disable */",
            self.title, self.version
        );
        let codes: Vec<String> = ERROR_CODES
            .iter()
            .map(|c| format!("\"{}\"", c.as_str()))
            .collect();
        let _ = writeln!(
            out,
            "\n/** Every error code the server sends. */\nexport type ErrorCode = {};",
            codes.join(" | ")
        );
        let auth = self
            .action("auth")
            .map(|a| a.reply.clone())
            .unwrap_or_default();
        let success = auth
            .get("oneOf")
            .and_then(|b| b.get(0))
            .cloned()
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\n/** The `auth` success frame. */\nexport type AuthSuccess = {};",
            ts_type(&success, 0)
        );
        let _ = writeln!(
            out,
            "\n/** Every action: its message (as sent, with `action` and `ref`) and its reply. */\nexport interface Actions {{"
        );
        for action in &self.actions {
            let mut doc = format!("`{}`", action.name);
            if !action.public {
                doc.push_str(": authenticated");
                if !action.roles.is_empty() {
                    doc.push_str(&format!(", a role of {}", action.roles.join("/")));
                }
                if !action.scopes.is_empty() {
                    doc.push_str(&format!(", scopes {}", action.scopes.join(" ")));
                }
            }
            let _ = writeln!(
                out,
                "  /** {doc} */\n  {}: {{\n    message: {};\n    reply: {};\n  }};",
                property_name(&action.name),
                ts_type(&action.message, 2),
                ts_type(&action.reply, 2)
            );
        }
        out.push_str("}\n");
        let _ = writeln!(
            out,
            "\n/** Frames the server pushes, by `action`. */\nexport interface Pushes {{"
        );
        for push in &self.pushes {
            let _ = writeln!(
                out,
                "  {}: {};",
                property_name(&push.name),
                ts_type(&push.schema, 1)
            );
        }
        out.push_str("}\n");
        let topics = self.action("vk:join").is_some();
        out.push_str(&RUNTIME.replace("__TOPICS__", if topics { TOPICS } else { "" }));
        out
    }
}
