//! The schemars schemas of the k8s-openapi types, walked alongside the JSON of an object.
//!
//! Strategic merge patch and server-side apply both need facts about a field that the
//! OpenAPI schemas of k8s-openapi do not carry (patch strategies, list types), so each keeps
//! them in a table by schema definition name and field, and finds the definition of the field
//! it is at by walking the schema of the Rust type alongside the document.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value};

/// Where `$ref`s of the draft 2020-12 settings that [`SCHEMA_CACHE`] uses point.
const DEFINITIONS_REF_PREFIX: &str = "#/$defs/";

/// The schemas of every type walked so far. Generating a schema builds the definitions of the
/// whole type tree (a Pod's is over a hundred), so each type is generated once, into one
/// generator whose definitions all types share. Bounded by the number of Rust types the
/// walkers are instantiated with.
static SCHEMA_CACHE: LazyLock<Mutex<SchemaCache>> = LazyLock::new(|| {
    Mutex::new(SchemaCache {
        generator: SchemaSettings::draft2020_12().into_generator(),
        roots: HashMap::new(),
        definitions: Arc::default(),
    })
});

struct SchemaCache {
    generator: SchemaGenerator,
    /// The schema of each type seen, by `JsonSchema::schema_id`; a `$ref` for k8s-openapi types.
    roots: HashMap<String, Value>,
    /// A copy of the generator's definitions, renewed when a new type adds to them, so that a
    /// walk reads them without holding the lock.
    definitions: Arc<Map<String, Value>>,
}

/// The schema of one type, with the definitions its `$ref`s point into.
pub(crate) struct Schemas {
    root: Value,
    pub(crate) definitions: Arc<Map<String, Value>>,
}

/// A place in the schema: the schema of the value there, and the definition it was reached
/// through, which is what the tables of facts name fields by. Both are absent where the schema
/// says nothing (an unknown field, or a type without schema).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node<'s> {
    pub(crate) definition: Option<&'s str>,
    pub(crate) schema: Option<&'s Map<String, Value>>,
}

impl Schemas {
    pub(crate) fn of<K: JsonSchema>() -> Schemas {
        let mut cache = SCHEMA_CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        let id = K::schema_id();
        let root = match cache.roots.get(id.as_ref()) {
            Some(root) => root.clone(),
            None => {
                let root = cache.generator.subschema_for::<K>().to_value();
                cache.definitions = Arc::new(cache.generator.definitions().clone());
                cache.roots.insert(id.into_owned(), root.clone());
                root
            }
        };
        Schemas { root, definitions: Arc::clone(&cache.definitions) }
    }

    pub(crate) fn root(&self) -> Node<'_> {
        self.resolve(&self.root)
    }

    pub(crate) fn resolve<'s>(&'s self, schema: &'s Value) -> Node<'s> {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
            return Node { definition: None, schema: schema.as_object() };
        };
        // Definition names are JSON-pointer escaped in references; k8s-openapi's contain no
        // character that schemars would percent-encode.
        let name = reference.strip_prefix(DEFINITIONS_REF_PREFIX).unwrap_or_default();
        let name = if name.contains('~') {
            Cow::Owned(name.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(name)
        };
        match self.definitions.get_key_value(name.as_ref()) {
            Some((name, Value::Object(schema))) => Node { definition: Some(name), schema: Some(schema) },
            _ => Node::UNKNOWN,
        }
    }

    /// The node of the value of `field` in the object at `node`, or of any value if the object
    /// is a map with free keys (`additionalProperties`).
    pub(crate) fn field<'s>(&'s self, node: Node<'s>, field: &str) -> Node<'s> {
        if let Some(property) = self.property(node, field) {
            return property;
        }
        self.values(node).unwrap_or(Node::UNKNOWN)
    }

    /// The node of `field` if the object at `node` declares it.
    pub(crate) fn property<'s>(&'s self, node: Node<'s>, field: &str) -> Option<Node<'s>> {
        let property = node.schema?.get("properties")?.get(field)?;
        Some(self.resolve(property))
    }

    /// The node of every value of the map at `node` (`additionalProperties`).
    pub(crate) fn values<'s>(&'s self, node: Node<'s>) -> Option<Node<'s>> {
        match node.schema?.get("additionalProperties")? {
            values @ Value::Object(_) => Some(self.resolve(values)),
            _ => None,
        }
    }

    pub(crate) fn items<'s>(&'s self, node: Node<'s>) -> Node<'s> {
        match node.schema.and_then(|schema| schema.get("items")) {
            Some(items) => self.resolve(items),
            None => Node::UNKNOWN,
        }
    }
}

impl Node<'_> {
    pub(crate) const UNKNOWN: Node<'static> = Node { definition: None, schema: None };

    /// The schema's `type` keyword, if it has one.
    pub(crate) fn type_name(self) -> Option<&'static str> {
        let name = self.schema?.get("type")?.as_str()?;
        ["object", "array", "string", "integer", "number", "boolean"].into_iter().find(|known| *known == name)
    }

    /// Whether the object at this node declares its fields (`properties`).
    pub(crate) fn has_properties(self) -> bool {
        self.schema.is_some_and(|schema| schema.get("properties").is_some_and(Value::is_object))
    }

    /// Whether the object at this node lists `field` as required.
    pub(crate) fn requires(self, field: &str) -> bool {
        let required = self.schema.and_then(|schema| schema.get("required")).and_then(Value::as_array);
        required.is_some_and(|required| required.iter().any(|name| name.as_str() == Some(field)))
    }
}
