//! CSV reading: byte records straight into columnar f32 buffers (no String per numeric cell).
//! A first pass types the columns and fills numeric ones; a second pass, only when some
//! column is text, collects the text cells.

use std::io::Read;

use csv::{ByteRecord, ReaderBuilder};

use inference::value::{category_of, to_f32};

use super::{check_header, classify, Cell, Column, ColumnData, Table};
use crate::error::DataLoadError;

fn csv_error(source_name: &str, e: &csv::Error) -> DataLoadError {
    let line = e.position().map_or(0, csv::Position::line);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("row has {len} fields but the header has {expected_len}")
        }
        _ => e.to_string(),
    };
    DataLoadError::Csv { source_name: source_name.to_owned(), line, message }
}

fn reader<R: Read>(r: R) -> csv::Reader<R> {
    ReaderBuilder::new().has_headers(true).flexible(false).from_reader(r)
}

/// Read CSV from whatever `open` yields (called once, or twice when text columns exist).
pub(super) fn read<R: Read>(
    source_name: &str,
    open: impl Fn() -> Result<R, DataLoadError>,
) -> Result<Table, DataLoadError> {
    let mut rdr = reader(open()?);
    let header = rdr.byte_headers().map_err(|e| csv_error(source_name, &e))?.clone();
    let mut names = Vec::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let name = std::str::from_utf8(raw).map_err(|_| DataLoadError::InvalidUtf8 {
            source_name: source_name.to_owned(),
            line: 1,
            column: format!("#{}", i + 1),
        })?;
        // The csv crate leaves a UTF-8 byte-order mark on the first name.
        names.push(if i == 0 { name.trim_start_matches('\u{feff}') } else { name }.trim().to_owned());
    }
    if names.len() == 1 && names[0].is_empty() {
        return Err(DataLoadError::Empty(source_name.to_owned()));
    }
    check_header(&names, source_name)?;

    // Pass 1: type every column; numeric columns are filled as we go.
    let mut numeric: Vec<Option<Vec<f32>>> = vec![Some(Vec::new()); names.len()];
    let mut record = ByteRecord::new();
    let mut rows = 0usize;
    while rdr.read_byte_record(&mut record).map_err(|e| csv_error(source_name, &e))? {
        let line = record.position().map_or(0, csv::Position::line);
        for (j, field) in record.iter().enumerate() {
            let text = std::str::from_utf8(field).map_err(|_| DataLoadError::InvalidUtf8 {
                source_name: source_name.to_owned(),
                line,
                column: names[j].clone(),
            })?;
            let Some(col) = numeric[j].as_mut() else {
                continue;
            };
            match classify(text) {
                Cell::Missing => col.push(f32::NAN),
                Cell::Number(x) if to_f32(x).is_some() => col.push(x as f32),
                Cell::Number(_) => {
                    return Err(DataLoadError::NonFinite {
                        source_name: source_name.to_owned(),
                        row: line,
                        column: names[j].clone(),
                    })
                }
                Cell::Text => numeric[j] = None,
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(DataLoadError::NoRows(source_name.to_owned()));
    }

    // Pass 2: text columns only.
    let text_cols: Vec<usize> = (0..names.len()).filter(|&j| numeric[j].is_none()).collect();
    let mut text: Vec<Vec<Option<String>>> = text_cols.iter().map(|_| Vec::with_capacity(rows)).collect();
    if !text_cols.is_empty() {
        let mut rdr = reader(open()?);
        while rdr.read_byte_record(&mut record).map_err(|e| csv_error(source_name, &e))? {
            for (slot, &j) in text.iter_mut().zip(&text_cols) {
                // Validated as UTF-8 in pass 1.
                let cell = String::from_utf8_lossy(&record[j]);
                slot.push((classify(&cell) != Cell::Missing).then(|| category_of(&cell).into_owned()));
            }
        }
    }
    let mut text = text.into_iter();
    let columns = names
        .into_iter()
        .zip(numeric)
        .map(|(name, num)| {
            let data = match num {
                Some(v) => ColumnData::Numeric(v),
                None => ColumnData::Text(text.next().unwrap_or_default()),
            };
            Column { name, data }
        })
        .collect();
    Ok(Table { columns })
}

#[cfg(test)]
mod tests {
    use super::super::read_csv_bytes;
    use super::*;

    fn read_str(s: &str) -> Result<Table, DataLoadError> {
        read_csv_bytes("t.csv", s.as_bytes())
    }

    #[test]
    fn types_columns_and_marks_missing() {
        let t = read_str("a,b,c\n1,x,\n2.5,,NA\n-3,y,7\n").unwrap();
        assert_eq!(t.n_rows(), 3);
        assert_eq!(t.columns[0].data, ColumnData::Numeric(vec![1.0, 2.5, -3.0]));
        assert_eq!(t.columns[1].data, ColumnData::Text(vec![Some("x".into()), None, Some("y".into())]));
        match &t.columns[2].data {
            ColumnData::Numeric(v) => assert!(v[0].is_nan() && v[1].is_nan() && v[2] == 7.0),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn bom_quotes_and_number_spellings() {
        let t = read_str("\u{feff}n,s\n\" 42 \",\"a, b\"\n1e3,\"line\nbreak\"\n+5,c\n-0,d\n").unwrap();
        assert_eq!(t.columns[0].name, "n");
        assert_eq!(t.columns[0].data, ColumnData::Numeric(vec![42.0, 1000.0, 5.0, 0.0]));
        assert_eq!(
            t.columns[1].data,
            ColumnData::Text(vec![Some("a, b".into()), Some("line\nbreak".into()), Some("c".into()), Some("d".into())])
        );
    }

    #[test]
    fn decimal_comma_is_text() {
        let t = read_str("x\n\"1,5\"\n2\n").unwrap();
        assert!(matches!(t.columns[0].data, ColumnData::Text(_)));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let e = read_str("a,b\n1,2\n3\n").unwrap_err();
        assert!(matches!(e, DataLoadError::Csv { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(matches!(read_str("a,b\n").unwrap_err(), DataLoadError::NoRows(_)));
        assert!(matches!(read_str("a,a\n1,2\n").unwrap_err(), DataLoadError::DuplicateColumn(..)));
        assert!(matches!(read_str("a,\n1,2\n").unwrap_err(), DataLoadError::BlankColumn(1, _)));
        let e = read_str("a\n1\ninf\n").unwrap_err();
        assert!(matches!(e, DataLoadError::NonFinite { row: 3, .. }), "{e}");
        let e = read_csv_bytes("t.csv", b"a,b\n1,x\n2,\xff\xfe\n").unwrap_err();
        assert!(matches!(&e, DataLoadError::InvalidUtf8 { line: 3, column, .. } if column == "b"), "{e}");
    }
}
