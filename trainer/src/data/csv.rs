//! CSV reading: byte records straight into columnar f32 buffers (no String per numeric cell).
//! A first pass types the columns and fills numeric ones; a second pass, only when some
//! column is text, collects the text cells. The delimiter is `,` unless the header line holds
//! none and a tab or `;` instead (as pandas' `sep=None` sniffs); a quoted field still open at
//! the end of the file is an error, not a cell that swallowed the rest of it.

use std::io::Read;

use csv::{ByteRecord, ReaderBuilder};

use inference::value::{category_of, to_f32};

use super::{check_header, classify, Cell, Column, ColumnData, Numbers, Table};
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

fn reader<R: Read>(r: R, delimiter: u8) -> csv::Reader<R> {
    ReaderBuilder::new().has_headers(true).flexible(false).delimiter(delimiter).from_reader(r)
}

/// How much of the file the delimiter is sniffed from.
const SNIFF_BYTES: u64 = 64 * 1024;

/// The delimiter, by the core's rule ([`inference::request::sniff_delimiter`]) over the head of the file.
fn sniff_delimiter(r: impl Read) -> Result<u8, std::io::Error> {
    let mut head = Vec::new();
    r.take(SNIFF_BYTES).read_to_end(&mut head)?;
    Ok(inference::request::sniff_delimiter(&head))
}

/// Passes bytes through while following their quoting by the core's rule
/// ([`inference::request::QuoteScan`]), so the end of the input can tell an unterminated quoted
/// field, which the csv crate silently ends there.
struct QuoteTracker<R> {
    inner: R,
    scan: inference::request::QuoteScan,
}

impl<R: Read> QuoteTracker<R> {
    fn new(inner: R, delimiter: u8) -> Self {
        Self { inner, scan: inference::request::QuoteScan::new(delimiter) }
    }

    /// The line where a quoted field opened and never closed, if the input ended inside one.
    fn unterminated(&self) -> Option<u64> {
        self.scan.unterminated()
    }
}

impl<R: Read> Read for QuoteTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan.scan(&buf[..n]);
        Ok(n)
    }
}

/// Read CSV from whatever `open` yields (called once, or twice when text columns exist).
pub(super) fn read<R: Read>(
    source_name: &str,
    open: impl Fn() -> Result<R, DataLoadError>,
) -> Result<Table, DataLoadError> {
    let delimiter = sniff_delimiter(open()?).map_err(|e| DataLoadError::Csv {
        source_name: source_name.to_owned(),
        line: 1,
        message: format!("cannot read: {e}"),
    })?;
    let mut rdr = reader(QuoteTracker::new(open()?, delimiter), delimiter);
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

    // Pass 1: type every column; numbers go into one row-major block (see `Numbers`), a
    // column found to be text leaves its slot unread (NaN, or numbers from before its first text).
    let width = names.len();
    let mut numeric = vec![true; width];
    let mut cells: Vec<f32> = Vec::new();
    let mut spreads = vec![super::Spread::default(); width];
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
            if !numeric[j] {
                cells.push(f32::NAN);
                continue;
            }
            match classify(text) {
                Cell::Missing => cells.push(f32::NAN),
                Cell::Number(x) if to_f32(x).is_some() => {
                    cells.push(x as f32);
                    spreads[j].add(x);
                }
                Cell::Number(_) => {
                    return Err(DataLoadError::NonFinite {
                        source_name: source_name.to_owned(),
                        row: line,
                        column: names[j].clone(),
                    })
                }
                Cell::Text => {
                    numeric[j] = false;
                    cells.push(f32::NAN);
                }
            }
        }
        rows += 1;
    }
    if let Some(line) = rdr.get_ref().unterminated() {
        return Err(DataLoadError::Csv {
            source_name: source_name.to_owned(),
            line,
            message: "a quoted field opened here is never closed (an unmatched `\"`)".into(),
        });
    }
    if rows == 0 {
        return Err(DataLoadError::NoRows(source_name.to_owned()));
    }

    // Pass 2: text columns only.
    let text_cols: Vec<usize> = (0..width).filter(|&j| !numeric[j]).collect();
    let mut text: Vec<Vec<Option<String>>> = text_cols.iter().map(|_| Vec::with_capacity(rows)).collect();
    if !text_cols.is_empty() {
        let mut rdr = reader(open()?, delimiter);
        while rdr.read_byte_record(&mut record).map_err(|e| csv_error(source_name, &e))? {
            for (slot, &j) in text.iter_mut().zip(&text_cols) {
                // Validated as UTF-8 in pass 1.
                let cell = String::from_utf8_lossy(&record[j]);
                slot.push((classify(&cell) != Cell::Missing).then(|| category_of(&cell).into_owned()));
            }
        }
        if text.first().map_or(0, Vec::len) != rows {
            return Err(DataLoadError::Csv {
                source_name: source_name.to_owned(),
                line: 0,
                message: format!("the file changed while it was read ({rows} rows, then a different count)"),
            });
        }
    }
    let warnings = names
        .iter()
        .zip(&numeric)
        .zip(&spreads)
        .filter(|((_, &num), _)| num)
        .filter_map(|((name, _), spread)| spread.warning(name))
        .collect();
    cells.shrink_to_fit();
    let block = std::sync::Arc::new(cells);
    let mut text = text.into_iter();
    let columns = names
        .into_iter()
        .zip(numeric)
        .enumerate()
        .map(|(j, (name, num))| {
            let data = if num {
                ColumnData::Numeric(Numbers::in_block(std::sync::Arc::clone(&block), j, width))
            } else {
                ColumnData::Text(text.next().unwrap_or_default())
            };
            Column { name, data }
        })
        .collect();
    Ok(Table { columns, warnings })
}

#[cfg(test)]
mod tests {
    use super::super::read_csv_bytes;
    use super::*;

    fn read_str(s: &str) -> Result<Table, DataLoadError> {
        read_csv_bytes("t.csv", s.as_bytes())
    }

    #[test]
    fn columns_that_f32_blurs_are_named() {
        // A timestamp-like offset with a spread of a few units: f32 steps by 128 there.
        let mut csv = String::from("t,x,y\n");
        for i in 0..50 {
            csv.push_str(&format!("{},{},{}\n", 1.7e9 + f64::from(i) * 0.05, i, 1e9 + f64::from(i) * 1e6));
        }
        let t = read_csv_bytes("t.csv", csv.as_bytes()).unwrap();
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(t.warnings[0].starts_with("column `t` varies by only 2.4500e0 around 1.7000e9"), "{:?}", t.warnings);
        assert!(t.warnings[0].contains("step by 128"), "{:?}", t.warnings);
    }

    #[test]
    fn types_columns_and_marks_missing() {
        let t = read_str("a,b,c\n1,x,\n2.5,,NA\n-3,y,7\n").unwrap();
        assert_eq!(t.n_rows(), 3);
        assert_eq!(t.columns[0].data, ColumnData::Numeric(vec![1.0, 2.5, -3.0].into()));
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
        assert_eq!(t.columns[0].data, ColumnData::Numeric(vec![42.0, 1000.0, 5.0, 0.0].into()));
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

    #[test]
    fn an_unclosed_quote_is_an_error_naming_its_line() {
        let e = read_str("x,y\n1,p\n2,\"q\n3,p\n4,q\n").unwrap_err();
        assert!(matches!(&e, DataLoadError::Csv { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("never closed"), "{e}");
        // Closed quotes, escaped quotes and quotes inside unquoted fields are fine.
        let t = read_str("x,y\n1,\"a \"\"b\"\" c\"\n2,5'11\"\n3,\"multi\nline\"\n").unwrap();
        assert_eq!(t.n_rows(), 3);
        assert_eq!(
            t.columns[1].data,
            ColumnData::Text(vec![Some("a \"b\" c".into()), Some("5'11\"".into()), Some("multi\nline".into())])
        );
    }

    #[test]
    fn tab_and_semicolon_files_are_sniffed_from_the_header() {
        for sep in ["\t", ";"] {
            let t = read_str(&format!("a{sep}b\n1{sep}x\n2{sep}y\n")).unwrap();
            assert_eq!(t.columns.len(), 2, "{sep:?}");
            assert_eq!(t.columns[0].data, ColumnData::Numeric(vec![1.0, 2.0].into()));
        }
        // A comma in the header wins, and separators inside quotes do not count.
        let t = read_str("\"a;b\",c\n1,2\n").unwrap();
        assert_eq!(t.columns[0].name, "a;b");
        let t = read_str("a\n1;2\n").unwrap();
        assert_eq!(t.columns.len(), 1);
    }
}
