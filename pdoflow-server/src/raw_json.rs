//! JSON read from the database as it is stored, passed on unparsed.
//!
//! jsonb keeps numbers as `numeric`, so a job's args may hold one that is
//! no `f64` (`1e400`), or that serde_json's fast float parsing rounds past
//! `f64::MAX` (`1.7976931348623157e308`): parsed into a `Value`, such a job
//! could never be read again. Its text is valid JSON, so it goes into the
//! response as it is.

use std::error::Error;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use tokio_postgres::types::{FromSql, Type};

/// A `json` or `jsonb` column's value, unparsed.
#[derive(Debug)]
pub struct RawJson(Box<RawValue>);

impl<'a> FromSql<'a> for RawJson {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<RawJson, Box<dyn Error + Sync + Send>> {
        // jsonb's binary form is a version byte (1), then the text.
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, text)) => text,
                _ => return Err("unsupported jsonb encoding version".into()),
            }
        } else {
            raw
        };
        let text = std::str::from_utf8(text)?.to_owned();
        Ok(RawJson(RawValue::from_string(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}
