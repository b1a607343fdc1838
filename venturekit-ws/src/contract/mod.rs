//! The contract: what clients may send and what they receive, generated from the Rust
//! types (cargo feature `contract`).
//!
//! Every action records the JSON Schema of its message and of its reply, when those types
//! derive [`schemars::JsonSchema`](https://docs.rs/schemars) and the `contract` feature is
//! on; the framework describes its own frames (`auth`, `ping`, `error`, topics). From that,
//! `contract --out DIR` (every app's command line) writes:
//! - `asyncapi.json`: an AsyncAPI 3.0.0 document;
//! - `schemas/`: a JSON Schema (draft-07) for every client and server message;
//! - `client.ts`: a typed TypeScript client without runtime dependencies.
//!
//! Without the feature, the schema hooks below compile to nothing and apps pay nothing.

#[cfg(feature = "contract")]
mod builtin;
#[cfg(feature = "contract")]
mod document;
#[cfg(feature = "contract")]
mod typescript;

#[cfg(feature = "contract")]
pub use document::{ActionContract, Contract, PushContract, ref_schema};

use serde_json::Value;
use std::marker::PhantomData;

/// Generates the JSON Schemas of message and reply types (draft-07, subschemas inlined).
/// Without the `contract` feature it generates nothing.
pub struct SchemaGen {
    #[cfg(feature = "contract")]
    deserialize: schemars::SchemaGenerator,
    #[cfg(feature = "contract")]
    serialize: schemars::SchemaGenerator,
}

impl std::fmt::Debug for SchemaGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaGen").finish_non_exhaustive()
    }
}

impl Default for SchemaGen {
    fn default() -> Self {
        SchemaGen::new()
    }
}

impl SchemaGen {
    /// A generator: draft-07 schemas with every subschema inlined, the message side as
    /// serde deserializes, the reply side as it serializes.
    pub fn new() -> Self {
        #[cfg(feature = "contract")]
        {
            let settings = schemars::generate::SchemaSettings::draft07().with(|s| {
                s.inline_subschemas = true;
                s.meta_schema = None;
            });
            SchemaGen {
                deserialize: settings.clone().for_deserialize().into_generator(),
                serialize: settings.for_serialize().into_generator(),
            }
        }
        #[cfg(not(feature = "contract"))]
        SchemaGen {}
    }
}

/// The schemas an action declares: its message and its reply.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Schemas {
    /// The message's schema (without `action` and `ref`), when its type derives
    /// `JsonSchema`; `None` when unknown.
    pub message: Option<Value>,
    /// Whether the handler takes a message at all.
    pub takes_message: bool,
    /// The reply.
    pub reply: ReplySchema,
}

/// What an action replies.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub enum ReplySchema {
    /// The type is not known (a handler registered without schemas, or a reply type that
    /// does not derive `JsonSchema`).
    #[default]
    Unknown,
    /// The handler returns `()`: no reply (`{"action":A,"ref":R,"ok":true}` with `ref`).
    Nothing,
    /// The schema of the reply value.
    Value(Value),
}

impl Schemas {
    /// Schemas as the macro records them.
    #[doc(hidden)]
    pub fn recorded(message: Option<Value>, takes_message: bool, reply: ReplySchema) -> Self {
        Schemas {
            message,
            takes_message,
            reply,
        }
    }

    /// Nothing known (the default for handlers registered without schemas).
    pub fn unknown() -> Self {
        Schemas {
            message: None,
            takes_message: true,
            reply: ReplySchema::Unknown,
        }
    }
}

/// Used by the generated code: asks a type for its schema when it has one.
#[doc(hidden)]
pub struct Probe<T: ?Sized>(PhantomData<fn() -> Box<T>>);

impl<T: ?Sized> Probe<T> {
    #[doc(hidden)]
    pub fn new() -> Self {
        Probe(PhantomData)
    }
}

impl<T: ?Sized> Default for Probe<T> {
    fn default() -> Self {
        Probe::new()
    }
}

/// The fallback for types without a schema (autoref specialization).
#[doc(hidden)]
pub trait ProbeFallback {
    /// No schema.
    fn message_schema(&self, _generator: &mut SchemaGen) -> Option<Value> {
        None
    }
    /// No schema.
    fn reply_schema(&self, _generator: &mut SchemaGen) -> Option<Value> {
        None
    }
}

impl<T: ?Sized> ProbeFallback for &Probe<T> {}

/// The schema of a type that derives `JsonSchema` (with the `contract` feature).
#[doc(hidden)]
pub trait ProbeSchema {
    /// The schema as serde deserializes the type.
    fn message_schema(&self, generator: &mut SchemaGen) -> Option<Value>;
    /// The schema as serde serializes the type.
    fn reply_schema(&self, generator: &mut SchemaGen) -> Option<Value>;
}

#[cfg(feature = "contract")]
impl<T: schemars::JsonSchema + ?Sized> ProbeSchema for Probe<T> {
    fn message_schema(&self, generator: &mut SchemaGen) -> Option<Value> {
        Some(clean(
            generator.deserialize.root_schema_for::<T>().to_value(),
        ))
    }
    fn reply_schema(&self, generator: &mut SchemaGen) -> Option<Value> {
        Some(clean(generator.serialize.root_schema_for::<T>().to_value()))
    }
}

/// The schemas of `M` (message) and `R` (reply value), for actions registered without the
/// macro ([`crate::ActionDef::with_schemas`]).
#[cfg(feature = "contract")]
pub fn schemas_of<M: schemars::JsonSchema, R: schemars::JsonSchema>(
    generator: &mut SchemaGen,
) -> Schemas {
    Schemas {
        message: Probe::<M>::new().message_schema(generator),
        takes_message: true,
        reply: match Probe::<R>::new().reply_schema(generator) {
            Some(Value::Null) | None => ReplySchema::Nothing,
            Some(schema) if schema.get("type") == Some(&Value::String("null".into())) => {
                ReplySchema::Nothing
            }
            Some(schema) => ReplySchema::Value(schema),
        },
    }
}

/// Drops what does not belong in an embedded payload schema (`$schema`).
#[cfg(feature = "contract")]
fn clean(mut schema: Value) -> Value {
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    schema
}
