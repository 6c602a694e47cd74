//! JSON reading: an array of records, or an object of equal-length column arrays.

use serde_json::Value;

use super::{check_header, classify, Cell, Column, ColumnData, Table};
use crate::error::DataLoadError;
use inference::value::{category_of, number_as_category, to_f32};

/// Parse JSON bytes into a table.
pub(super) fn read(source_name: &str, bytes: &[u8]) -> Result<Table, DataLoadError> {
    // Editors on Windows write a byte-order mark; serde_json does not skip it.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let shape = |message: String| DataLoadError::JsonShape { source_name: source_name.to_owned(), message };
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| DataLoadError::Json { source_name: source_name.to_owned(), message: e.to_string() })?;
    let (names, cells): (Vec<String>, Vec<Vec<&Value>>) = match &value {
        Value::Array(records) => {
            if records.is_empty() {
                return Err(DataLoadError::NoRows(source_name.to_owned()));
            }
            let mut names: Vec<String> = Vec::new();
            let mut index = std::collections::HashMap::new();
            for (i, r) in records.iter().enumerate() {
                let obj = r.as_object().ok_or_else(|| shape(format!("record {i} is not an object")))?;
                for k in obj.keys() {
                    if !index.contains_key(k) {
                        index.insert(k.clone(), names.len());
                        names.push(k.clone());
                    }
                }
            }
            let cells =
                names.iter().map(|n| records.iter().map(|r| r.get(n).unwrap_or(&Value::Null)).collect()).collect();
            (names, cells)
        }
        Value::Object(cols) => {
            let mut len = None;
            let mut names = Vec::with_capacity(cols.len());
            let mut cells = Vec::with_capacity(cols.len());
            for (k, v) in cols {
                let arr = v.as_array().ok_or_else(|| {
                    shape(format!("column `{k}` is not an array (expected an object of column arrays)"))
                })?;
                if *len.get_or_insert(arr.len()) != arr.len() {
                    return Err(shape(format!(
                        "column `{k}` has {} values, others have {}",
                        arr.len(),
                        len.unwrap_or(0)
                    )));
                }
                names.push(k.clone());
                cells.push(arr.iter().collect());
            }
            if len.unwrap_or(0) == 0 {
                return Err(DataLoadError::NoRows(source_name.to_owned()));
            }
            (names, cells)
        }
        _ => return Err(shape("expected an array of records or an object of column arrays".into())),
    };
    check_header(&names, source_name)?;
    let mut warnings = Vec::new();
    let columns = names
        .into_iter()
        .zip(cells)
        .map(|(name, cells)| column(source_name, name, &cells, &mut warnings))
        .collect::<Result<_, _>>()?;
    Ok(Table { columns, warnings })
}

fn column(
    source_name: &str,
    name: String,
    cells: &[&Value],
    warnings: &mut Vec<String>,
) -> Result<Column, DataLoadError> {
    let mut kinds = Vec::with_capacity(cells.len());
    for (row, v) in cells.iter().enumerate() {
        kinds.push(match v {
            Value::Null => Cell::Missing,
            Value::Number(n) => Cell::Number(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => classify(s),
            Value::Bool(_) => Cell::Text,
            Value::Array(_) | Value::Object(_) => {
                return Err(DataLoadError::JsonShape {
                    source_name: source_name.to_owned(),
                    message: format!(
                        "row {row}, column `{name}`: nested value (expected a number, string, bool or null)"
                    ),
                })
            }
        });
    }
    if let Some(row) = kinds.iter().position(|k| matches!(k, Cell::Number(x) if to_f32(*x).is_none())) {
        return Err(DataLoadError::NonFinite { source_name: source_name.to_owned(), row: row as u64, column: name });
    }
    let data = if kinds.contains(&Cell::Text) {
        ColumnData::Text(
            cells
                .iter()
                .zip(&kinds)
                .map(|(v, k)| match (v, k) {
                    (_, Cell::Missing) => None,
                    (Value::String(s), _) => Some(category_of(s).into_owned()),
                    (Value::Bool(b), _) => Some(b.to_string()),
                    (_, Cell::Number(x)) => Some(number_as_category(*x)),
                    _ => None,
                })
                .collect(),
        )
    } else {
        let mut spread = super::Spread::default();
        let values: Vec<f32> = kinds
            .iter()
            .map(|k| match k {
                Cell::Number(x) => {
                    spread.add(*x);
                    *x as f32
                }
                _ => f32::NAN,
            })
            .collect();
        warnings.extend(spread.warning(&name));
        ColumnData::Numeric(values.into())
    };
    Ok(Column { name, data })
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
}
