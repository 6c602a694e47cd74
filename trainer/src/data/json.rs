//! JSON reading: an array of records, or an object of equal-length column arrays.
//!
//! Streamed through serde visitors straight into per-column cells, in document order: a
//! `serde_json::Value` tree takes ~25× the text's size (a map per record, a 32-byte value
//! plus a key string per cell); a cell here takes 24 bytes until its column is typed.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{check_header, classify, Cell, Column, ColumnData, Table};
use crate::error::DataLoadError;
use inference::value::{category_of, number_as_category, to_f32};

/// Parse JSON bytes into a table.
pub(super) fn read(source_name: &str, bytes: &[u8]) -> Result<Table, DataLoadError> {
    // Editors on Windows write a byte-order mark; serde_json does not skip it.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    parse(source_name, &mut serde_json::Deserializer::from_slice(bytes))
}

/// Parse JSON from a reader (a file: its bytes are never held whole). A failed read is an
/// [`DataLoadError::Io`] naming `source_name`, not a syntax error.
pub(super) fn read_from(source_name: &str, mut r: impl Read) -> Result<Table, DataLoadError> {
    let io = |e: std::io::Error| DataLoadError::Io { path: source_name.into(), source: e };
    let mut head = [0u8; 3];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    // Editors on Windows write a byte-order mark; serde_json does not skip it.
    let head = if head[..n] == *b"\xEF\xBB\xBF" { Vec::new() } else { head[..n].to_vec() };
    let r = std::io::BufReader::with_capacity(256 * 1024, std::io::Cursor::new(head).chain(r));
    parse(source_name, &mut serde_json::Deserializer::from_reader(r))
}

fn parse<'de, R: serde_json::de::Read<'de>>(
    source_name: &str,
    de: &mut serde_json::Deserializer<R>,
) -> Result<Table, DataLoadError> {
    let mut b = Builder::default();
    let parsed = (&mut b).deserialize(&mut *de).and_then(|()| de.end());
    let shape = |message: String| DataLoadError::JsonShape { source_name: source_name.to_owned(), message };
    if let Err(e) = parsed {
        return Err(match (b.shape_error.take(), e.io_error_kind()) {
            (Some(m), _) => shape(m),
            (None, Some(kind)) => {
                DataLoadError::Io { path: source_name.into(), source: std::io::Error::new(kind, e.to_string()) }
            }
            (None, None) => DataLoadError::Json { source_name: source_name.to_owned(), message: e.to_string() },
        });
    }
    // What a parsed document is checked for, in the same order: the shape (column by column,
    // each holding its last value when its key repeats), rows, names, then each column's cells.
    if b.columnar {
        b.rows = b.cells.first().map_or(0, Vec::len);
        for (j, name) in b.names.iter().enumerate() {
            if b.not_array[j] {
                return Err(shape(format!("column `{name}` is not an array (expected an object of column arrays)")));
            }
            if b.cells[j].len() != b.rows {
                return Err(shape(format!("column `{name}` has {} values, others have {}", b.cells[j].len(), b.rows)));
            }
        }
    }
    if b.rows == 0 {
        return Err(DataLoadError::NoRows(source_name.to_owned()));
    }
    check_header(&b.names, source_name)?;
    for (name, cells) in b.names.iter().zip(&b.cells) {
        if let Some(row) = cells.iter().position(|c| matches!(c, JsonCell::Nested)) {
            return Err(shape(format!(
                "row {row}, column `{name}`: nested value (expected a number, string, bool or null)"
            )));
        }
        if let Some(row) = cells.iter().position(|c| matches!(c, JsonCell::NonFinite)) {
            let (source_name, column) = (source_name.to_owned(), name.clone());
            return Err(DataLoadError::NonFinite { source_name, row: row as u64, column });
        }
    }
    let mut warnings = Vec::new();
    let columns = b.names.into_iter().zip(b.cells).map(|(name, cells)| column(name, cells, &mut warnings)).collect();
    Ok(Table { columns, warnings })
}

/// One cell as read, before its column is typed. A nested or non-finite value is kept as a
/// marker and refused once the document is read, so a repeated key's last value decides, as
/// in a parsed object.
enum JsonCell {
    Missing,
    Number(f64),
    Bool(bool),
    Text(Box<str>),
    Nested,
    NonFinite,
}

/// The columns read so far.
#[derive(Default)]
struct Builder {
    names: Vec<String>,
    index: HashMap<String, usize>,
    cells: Vec<Vec<JsonCell>>,
    /// Records read (for column arrays, set once the document is read).
    rows: usize,
    /// An object of column arrays, not an array of records.
    columnar: bool,
    /// Columns (of an object of column arrays) whose value is not an array.
    not_array: Vec<bool>,
    /// Why the visitors stopped, when it is the document's shape (serde's error only carries a
    /// string, which would read as a syntax error).
    shape_error: Option<String>,
}

impl Builder {
    fn refuse<E: de::Error>(&mut self, why: String) -> E {
        let e = E::custom(&why);
        self.shape_error = Some(why);
        e
    }

    fn not_a_table<E: de::Error>(&mut self) -> Result<(), E> {
        Err(self.refuse("expected an array of records or an object of column arrays".into()))
    }

    fn column(&mut self, name: String) -> usize {
        if let Some(&j) = self.index.get(&name) {
            return j;
        }
        let j = self.names.len();
        self.index.insert(name.clone(), j);
        self.names.push(name);
        self.not_array.push(false);
        // A key first seen in a later record is missing from the earlier ones.
        self.cells.push(std::iter::repeat_with(|| JsonCell::Missing).take(self.rows).collect());
        j
    }
}

/// Read past a value whose content does not matter (it is refused or replaced), with
/// serde_json's iterative `ignore_value`: any depth, no recursion.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Each visitor is also its own seed: JSON says what a value is, so it is read with
/// `deserialize_any`.
macro_rules! seed_is_visitor {
    ($($ty:ty => $value:ty),* $(,)?) => {$(
        impl<'de> DeserializeSeed<'de> for $ty {
            type Value = $value;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<$value, D::Error> {
                d.deserialize_any(self)
            }
        }
    )*};
}

seed_is_visitor!(&mut Builder => (), Record<'_> => (), ColumnArray<'_> => (), CellSeed => JsonCell);

/// Visitor methods for the scalars a place does not take: each answers `$answer`.
macro_rules! scalars {
    ($answer:ident) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            self.$answer()
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            self.$answer()
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            self.$answer()
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            self.$answer()
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            self.$answer()
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            self.$answer()
        }
    };
}

impl<'de> Visitor<'de> for &mut Builder {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records or an object of column arrays")
    }

    /// An array of records.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Record(&mut *self))?.is_some() {
            self.rows += 1;
            let rows = self.rows;
            for c in self.cells.iter_mut().filter(|c| c.len() < rows) {
                c.push(JsonCell::Missing);
            }
        }
        Ok(())
    }

    /// An object of column arrays.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.columnar = true;
        while let Some(name) = map.next_key::<String>()? {
            let j = self.column(name);
            // A repeated key: the last value wins, as in a parsed object.
            self.cells[j].clear();
            self.not_array[j] = false;
            map.next_value_seed(ColumnArray { b: &mut *self, j })?;
        }
        Ok(())
    }

    scalars!(not_a_table);
}

/// One record of an array of records.
struct Record<'b>(&'b mut Builder);

impl Record<'_> {
    fn not_an_object<E: de::Error>(self) -> Result<(), E> {
        let row = self.0.rows;
        Err(self.0.refuse(format!("record {row} is not an object")))
    }
}

impl<'de> Visitor<'de> for Record<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record (an object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let b = self.0;
        let row = b.rows;
        while let Some(name) = map.next_key::<String>()? {
            let j = b.column(name);
            let cell = map.next_value_seed(CellSeed)?;
            // A repeated key: the last value wins, as in a parsed object.
            match b.cells[j].get_mut(row) {
                Some(slot) => *slot = cell,
                None => b.cells[j].push(cell),
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        skip_seq(seq)?;
        self.not_an_object()
    }

    scalars!(not_an_object);
}

/// One column's value in an object of column arrays.
struct ColumnArray<'b> {
    b: &'b mut Builder,
    j: usize,
}

impl ColumnArray<'_> {
    fn not_an_array<E: de::Error>(self) -> Result<(), E> {
        self.b.not_array[self.j] = true;
        Ok(())
    }
}

impl<'de> Visitor<'de> for ColumnArray<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of cells")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(cell) = seq.next_element_seed(CellSeed)? {
            self.b.cells[self.j].push(cell);
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        skip_map(map)?;
        self.not_an_array()
    }

    scalars!(not_an_array);
}

/// One cell: a number, string, bool or null.
struct CellSeed;

fn number(x: f64) -> JsonCell {
    if to_f32(x).is_some() {
        JsonCell::Number(x)
    } else {
        JsonCell::NonFinite
    }
}

impl<'de> Visitor<'de> for CellSeed {
    type Value = JsonCell;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, string, bool or null")
    }
    fn visit_unit<E: de::Error>(self) -> Result<JsonCell, E> {
        Ok(JsonCell::Missing)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<JsonCell, E> {
        Ok(JsonCell::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<JsonCell, E> {
        Ok(number(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<JsonCell, E> {
        Ok(number(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonCell, E> {
        Ok(number(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<JsonCell, E> {
        Ok(match classify(v) {
            Cell::Missing => JsonCell::Missing,
            Cell::Number(x) if to_f32(x).is_none() => JsonCell::NonFinite,
            _ => JsonCell::Text(v.into()),
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<JsonCell, A::Error> {
        skip_seq(seq)?;
        Ok(JsonCell::Nested)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<JsonCell, A::Error> {
        skip_map(map)?;
        Ok(JsonCell::Nested)
    }
}

/// Type a column: numeric when every present cell is a number (or a string that reads as
/// one), otherwise text with numbers written as categories.
fn column(name: String, cells: Vec<JsonCell>, warnings: &mut Vec<String>) -> Column {
    let text = cells.iter().any(|c| match c {
        JsonCell::Bool(_) => true,
        JsonCell::Text(s) => !matches!(classify(s), Cell::Number(_)),
        _ => false,
    });
    let data = if text {
        ColumnData::Text(
            cells
                .into_iter()
                .map(|c| match c {
                    JsonCell::Missing => None,
                    JsonCell::Text(s) => Some(category_of(&s).into_owned()),
                    JsonCell::Bool(b) => Some(b.to_string()),
                    JsonCell::Number(x) => Some(number_as_category(x)),
                    // Refused before any column is typed.
                    JsonCell::Nested | JsonCell::NonFinite => None,
                })
                .collect(),
        )
    } else {
        let mut spread = super::Spread::default();
        let values: Vec<f32> = cells
            .into_iter()
            .map(|c| {
                let x = match c {
                    JsonCell::Number(x) => x,
                    JsonCell::Text(s) => match classify(&s) {
                        Cell::Number(x) => x,
                        _ => f64::NAN,
                    },
                    _ => f64::NAN,
                };
                spread.add(x);
                x as f32
            })
            .collect();
        warnings.extend(spread.warning(&name));
        ColumnData::Numeric(values.into())
    };
    Column { name, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_columns_give_the_same_table() {
        let a = read("r", br#"[{"x": 1, "c": "a"}, {"x": null, "c": "b"}, {"x": "3", "c": 2}]"#).unwrap();
        let b = read("c", br#"{"x": [1, null, "3"], "c": ["a", "b", 2]}"#).unwrap();
        assert_eq!(a.columns.len(), 2);
        assert_eq!(a.columns[1].data, ColumnData::Text(vec![Some("a".into()), Some("b".into()), Some("2".into())]));
        match (&a.columns[0].data, &b.columns[0].data) {
            (ColumnData::Numeric(x), ColumnData::Numeric(y)) => {
                assert_eq!(x[0], 1.0);
                assert!(x[1].is_nan() && y[1].is_nan());
                assert_eq!((x[2], y[2]), (3.0, 3.0));
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn absent_keys_are_missing() {
        let t = read("r", br#"[{"x": 1}, {"y": "a"}]"#).unwrap();
        assert!(t.columns[0].is_missing(1));
        assert!(t.columns[1].is_missing(0));
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(matches!(read("j", b"42").unwrap_err(), DataLoadError::JsonShape { .. }));
        assert!(matches!(read("j", b"[1, 2]").unwrap_err(), DataLoadError::JsonShape { .. }));
        assert!(matches!(read("j", br#"{"a": [1], "b": [1, 2]}"#).unwrap_err(), DataLoadError::JsonShape { .. }));
        let e = read("j", br#"[{"a": {"b": 1}}]"#).unwrap_err();
        assert!(e.to_string().contains("nested value"), "{e}");
        assert!(matches!(read("j", b"[").unwrap_err(), DataLoadError::Json { .. }));
        assert!(matches!(read("j", b"[]").unwrap_err(), DataLoadError::NoRows(_)));
    }

    #[test]
    fn columns_keep_document_order_and_a_repeated_key_keeps_its_last_value() {
        let t = read("r", br#"[{"b": 1, "a": "x"}, {"c": 2, "b": 3, "b": 4}]"#).unwrap();
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!(t.columns[0].data, ColumnData::Numeric(vec![1.0, 4.0].into()));
        assert!(t.columns[2].is_missing(0) && !t.columns[2].is_missing(1));
        let t = read("c", br#"{"z": [1, 2], "y": [true, null]}"#).unwrap();
        assert_eq!(t.columns[0].name, "z");
        assert_eq!(t.columns[1].data, ColumnData::Text(vec![Some("true".into()), None]));
    }

    #[test]
    fn errors_name_the_record_and_column_and_never_echo_cells() {
        let e = read("j", br#"[{"a": 1}, {"a": [[["secret"]]]}]"#).unwrap_err();
        assert!(e.to_string().contains("row 1, column `a`: nested value"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = read("j", br#"[{"a": 1}, "secret"]"#).unwrap_err();
        assert!(
            matches!(&e, DataLoadError::JsonShape { message, .. } if message == "record 1 is not an object"),
            "{e}"
        );
        let e = read("j", br#"{"a": [1, 2], "b": "secret"}"#).unwrap_err();
        assert!(e.to_string().contains("column `b` is not an array"), "{e}");
        let e = read("j", br#"[{"a": 1}, {"a": 1e39}]"#).unwrap_err();
        assert!(matches!(&e, DataLoadError::NonFinite { row: 1, column, .. } if column == "a"), "{e}");
        let e = read("j", br#"[{"a": "1e39"}]"#).unwrap_err();
        assert!(matches!(&e, DataLoadError::NonFinite { row: 0, .. }), "{e}");
        assert!(matches!(read("j", br#"[{"a": 1}] x"#).unwrap_err(), DataLoadError::Json { .. }));
        assert!(matches!(read("j", br#"{"a": []}"#).unwrap_err(), DataLoadError::NoRows(_)));
    }

    #[test]
    fn a_reader_gives_the_table_the_bytes_give() {
        let text = "\u{feff}[{\"x\": 1.5, \"c\": \"a\"}, {\"x\": null, \"c\": 7}]";
        let a = read("r", text.as_bytes()).unwrap();
        let b = read_from("r", text.as_bytes()).unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "NaN cells compare by their printing");
        assert_eq!(b.columns[1].data, ColumnData::Text(vec![Some("a".into()), Some("7".into())]));
    }

    #[test]
    fn a_repeated_key_s_last_value_decides_even_over_a_bad_earlier_one() {
        let t = read("r", br#"[{"a": {"x": 1}, "a": 2, "b": 1e39, "b": 3}]"#).unwrap();
        assert_eq!(t.columns[0].data, ColumnData::Numeric(vec![2.0].into()));
        assert_eq!(t.columns[1].data, ColumnData::Numeric(vec![3.0].into()));
        let t = read("c", br#"{"a": [1, 2], "y": [1, 2, 3], "a": [4, 5, 6], "b": "x", "b": [7, 8, 9]}"#).unwrap();
        assert_eq!(t.n_rows(), 3);
        assert_eq!(t.columns[0].data, ColumnData::Numeric(vec![4.0, 5.0, 6.0].into()));
        let e = read("c", br#"{"a": [1, 2], "y": [1, 2, 3]}"#).unwrap_err();
        assert!(e.to_string().contains("column `y` has 3 values, others have 2"), "{e}");
        // The first column (in order) with a nested value, at its first such row.
        let e = read("r", br#"[{"a": 1, "b": [0]}, {"a": [1], "b": 2}]"#).unwrap_err();
        assert!(e.to_string().contains("row 1, column `a`: nested value"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        // A cell, or a record that is no object, is skipped by serde_json's iterative
        // `ignore_value`, then refused.
        let deep = format!("[{{\"a\": {}1{}}}]", "[".repeat(300_000), "]".repeat(300_000));
        let e = read("j", deep.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("row 0, column `a`: nested value"), "{e}");
        let deep = format!("[{}{}]", "[".repeat(300_000), "]".repeat(300_000));
        let e = read("j", deep.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("record 0 is not an object"), "{e}");
    }

    #[test]
    fn a_failed_read_is_an_io_error_not_bad_json() {
        /// Gives the first `.1` bytes of `.0`, then fails.
        struct Failing(&'static [u8], usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.1).min(self.0.len());
                if n == 0 {
                    return Err(std::io::Error::other("device gone"));
                }
                buf[..n].copy_from_slice(&self.0[..n]);
                (self.0, self.1) = (&self.0[n..], self.1 - n);
                Ok(n)
            }
        }
        for ok_bytes in [0, 2, 8] {
            let e = read_from("d.json", Failing(b"[{\"a\": 1}, {\"a\": 2}]", ok_bytes)).unwrap_err();
            assert!(matches!(&e, DataLoadError::Io { path, .. } if path.ends_with("d.json")), "{ok_bytes}: {e}");
        }
        // One byte at a time still finds the byte-order mark.
        struct Trickle(Vec<u8>);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0.remove(0);
                Ok(1)
            }
        }
        let t = read_from("t.json", Trickle(b"\xEF\xBB\xBF[{\"a\": 1}]".to_vec())).unwrap();
        assert_eq!(t.columns[0].name, "a");
    }
}
