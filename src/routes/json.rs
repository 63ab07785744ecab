//! JSON request bodies, which must be objects.
//!
//! serde's derived structs also accept an array of their fields in order, so
//! `["Support bot", "Be brief"]` where `{"name": …}` belongs would be taken
//! field by field. No client means that, and the API documents objects: the
//! extractor here refuses anything else with the usual 422.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::{DeserializeOwned, MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer};

/// `web::Json`, limited to a JSON object (with the same limits, content-type
/// rule and error mapping, configured once in `startup`).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Json::<Object<T>>::from_request(req, payload);
        Box::pin(async move { Ok(Json(body.await?.into_inner().0)) })
    }
}

/// Parses a body already read as bytes, by the same rule.
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice::<Object<T>>(body).map(|o| o.0)
}

/// `T`, read only from a map.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OnlyMaps<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OnlyMaps<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(OnlyMaps(PhantomData))
            .map(Object)
    }
}

#[cfg(test)]
mod tests {
    use super::from_slice;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Agent {
        name: String,
        #[serde(default)]
        enabled: Option<bool>,
    }

    #[test]
    fn an_object_reads_as_the_struct_would() {
        let agent: Agent = from_slice(br#"{"name": "Bot", "enabled": true}"#).unwrap();
        assert_eq!(
            agent,
            Agent {
                name: "Bot".into(),
                enabled: Some(true)
            }
        );
        // The struct's own rules still apply inside the object.
        let missing = from_slice::<Agent>(br#"{"enabled": true}"#).unwrap_err();
        assert!(
            missing.to_string().contains("missing field `name`"),
            "{missing}"
        );
    }

    #[test]
    fn an_array_of_the_fields_in_order_is_refused() {
        // What serde's derive alone accepts.
        assert!(serde_json::from_slice::<Agent>(br#"["Bot", true]"#).is_ok());
        for body in [&br#"["Bot", true]"#[..], b"null", b"\"Bot\"", b"3"] {
            let e = from_slice::<Agent>(body).unwrap_err();
            assert!(e.is_data(), "a 422, not a 400: {e}");
            assert!(e.to_string().contains("expected a JSON object"), "{e}");
        }
    }

    #[test]
    fn malformed_json_stays_a_syntax_error() {
        let e = from_slice::<Agent>(br#"{"name": "#).unwrap_err();
        assert!(!e.is_data(), "{e}");
    }
}
