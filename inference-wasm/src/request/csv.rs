//! CSV text as prediction input (MLflow's `text/csv`, `trainer predict --input/--features`,
//! the page's pasted CSV): RFC 4180 records read with `csv-core`, columns matched to features
//! by header name (others ignored; every feature must be there), or positional without a header.

use csv_core::{ReadRecordResult, Reader};

use super::bind::Binder;
use crate::error::RequestError;

/// How the columns of the CSV are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvColumns {
    /// The first record is a header; columns are matched to features by name.
    Header,
    /// No header: every record holds the features in order.
    Positional,
}

fn malformed(message: String) -> RequestError {
    RequestError::Malformed { format: "CSV", message }
}

/// The delimiter of CSV text, from its first line: `,` if it holds one (outside quotes), else a
/// tab, else `;` (as pandas' `sep=None` sniffs; a spreadsheet's copy is tab-separated). The
/// trainer's loader reads datasets with the same rule.
pub fn sniff_delimiter(head: &[u8]) -> u8 {
    let (mut quoted, mut seen) = (false, [false; 3]);
    for &b in head {
        match b {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            b',' if !quoted => seen[0] = true,
            b'\t' if !quoted => seen[1] = true,
            b';' if !quoted => seen[2] = true,
            _ => {}
        }
    }
    match seen {
        [false, true, _] => b'\t',
        [false, false, true] => b';',
        _ => b',',
    }
}

/// Follows RFC 4180 quoting as `csv-core` and the csv crate read it (a quote opens a field only
/// at the field's start; `""` inside a quoted field is a quote), to tell an input that ends
/// inside a quoted field: both readers silently end the field there, so one stray quote would
/// swallow every later row into one cell. The core's CSV and the trainer's loader use this one
/// rule.
#[derive(Debug, Clone)]
pub struct QuoteScan {
    delimiter: u8,
    line: u64,
    at_field_start: bool,
    in_quotes: bool,
    /// A quote seen inside quotes: the next byte says whether it closed the field.
    quote_pending: bool,
    opened_at: u64,
}

impl QuoteScan {
    /// A scan of input separated by `delimiter`, before its first byte.
    pub fn new(delimiter: u8) -> Self {
        Self { delimiter, line: 1, at_field_start: true, in_quotes: false, quote_pending: false, opened_at: 0 }
    }

    /// The 1-based line where a quoted field opened and never closed, if the input so far
    /// ends inside one.
    pub fn unterminated(&self) -> Option<u64> {
        (self.in_quotes && !self.quote_pending).then_some(self.opened_at)
    }

    /// Follow the next bytes of the input.
    pub fn scan(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.in_quotes {
                if std::mem::take(&mut self.quote_pending) {
                    if b == b'"' {
                        continue; // An escaped quote.
                    }
                    self.in_quotes = false; // Closed; `b` is read as unquoted text below.
                } else {
                    match b {
                        b'"' => self.quote_pending = true,
                        b'\n' => self.line += 1,
                        _ => {}
                    }
                    continue;
                }
            }
            match b {
                b'"' if self.at_field_start => {
                    self.in_quotes = true;
                    self.opened_at = self.line;
                    self.at_field_start = false;
                }
                b'\n' => {
                    self.line += 1;
                    self.at_field_start = true;
                }
                b'\r' => self.at_field_start = true,
                _ => self.at_field_start = b == self.delimiter,
            }
        }
    }
}

/// Iterates the records of CSV text, each as its fields.
struct Records<'a> {
    input: &'a [u8],
    reader: Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    done: bool,
}

impl<'a> Records<'a> {
    fn new(input: &'a [u8], delimiter: u8) -> Self {
        let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
        let reader = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
        Self { input, reader, out: vec![0; 1024], ends: vec![0; 64], done: false }
    }

    /// The next record's fields (None at the end); `Err` names the record index.
    fn next_record(&mut self, index: usize) -> Result<Option<Vec<&str>>, RequestError> {
        if self.done {
            return Ok(None);
        }
        let (mut nout, mut nend) = (0, 0);
        loop {
            let (res, nin, o, e) = self.reader.read_record(self.input, &mut self.out[nout..], &mut self.ends[nend..]);
            self.input = &self.input[nin..];
            nout += o;
            nend += e;
            match res {
                ReadRecordResult::InputEmpty => continue,
                ReadRecordResult::OutputFull => self.out.resize(self.out.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                ReadRecordResult::Record => break,
                ReadRecordResult::End => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
        let text = std::str::from_utf8(&self.out[..nout])
            .map_err(|_| malformed(format!("record {index} is not valid UTF-8")))?;
        let mut start = 0;
        let fields = self.ends[..nend]
            .iter()
            .map(|&end| {
                let f = &text[start..end];
                start = end;
                f
            })
            .collect();
        Ok(Some(fields))
    }
}

/// Bind every data record of `text` into `b`.
pub(crate) fn bind_csv(b: &mut Binder<'_>, text: &[u8], columns: CsvColumns) -> Result<(), RequestError> {
    // Rows without a header (one CLI line) are the features in order, comma-separated.
    let delimiter = if columns == CsvColumns::Header { sniff_delimiter(text) } else { b',' };
    let mut quotes = QuoteScan::new(delimiter);
    quotes.scan(text);
    if let Some(line) = quotes.unterminated() {
        return Err(malformed(format!(
            "the quoted field opened on line {line} is never closed (a stray `\"`?); it would swallow every later row"
        )));
    }
    let mut records = Records::new(text, delimiter);
    let n = b.pre.num_features();
    let (map, width): (Vec<Option<usize>>, usize) = match columns {
        CsvColumns::Positional => ((0..n).map(Some).collect(), n),
        CsvColumns::Header => {
            let header = records.next_record(0)?.ok_or_else(|| malformed("no header row".into()))?;
            let map = b.column_map(&header)?;
            let width = map.len();
            (map, width)
        }
    };
    let mut row = 0;
    while let Some(fields) = records.next_record(row + 1)? {
        // A blank line reads as one empty field.
        if fields.len() == 1 && fields[0].is_empty() && width > 1 {
            continue;
        }
        if fields.len() != width {
            return Err(match columns {
                CsvColumns::Header => {
                    malformed(format!("row {row} has {} fields, the header has {width}", fields.len()))
                }
                CsvColumns::Positional => RequestError::at(
                    Some(row),
                    crate::error::PredictError::WrongFeatureCount { expected: width, got: fields.len() },
                ),
            });
        }
        b.text_row(&fields, &map)?;
        row += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::Preprocessor;
    use crate::request::bind::Rows;
    use crate::spec::{FeatureKind, FeatureSpec, MissingStrategy, Preprocessing, Scaler};

    fn pre() -> Preprocessor {
        Preprocessor::new(&Preprocessing {
            feature_names: vec!["x".into(), "c".into()],
            features: vec![
                FeatureSpec { name: "x".into(), kind: FeatureKind::Numeric { fill_value: Some(2.0) } },
                FeatureSpec {
                    name: "c".into(),
                    kind: FeatureKind::Categorical {
                        categories: vec!["a,b".into(), "z".into()],
                        fill_value: Some("z".into()),
                    },
                },
            ],
            missing_strategy: MissingStrategy::Mean,
            scaler: Scaler { mean: vec![0.0, 0.0], scale: vec![1.0, 1.0] },
            target_scaler: None,
            dropped_columns: vec![],
        })
    }

    fn bind(text: &str, columns: CsvColumns) -> Result<Rows, RequestError> {
        let p = pre();
        let mut b = Binder::new(&p, 100);
        bind_csv(&mut b, text.as_bytes(), columns)?;
        Ok(b.finish())
    }

    #[test]
    fn header_names_pick_columns() {
        let rows = bind("\u{feff},c,x,label\n0,\"a,b\",1.5,yes\r\n\n1,,NA,no\n", CsvColumns::Header).unwrap();
        assert_eq!(rows, Rows { x: vec![1.5, 0.0, 2.0, 1.0], rows: 2 });
        let rows = bind("7,z\n", CsvColumns::Positional).unwrap();
        assert_eq!(rows, Rows { x: vec![7.0, 1.0], rows: 1 });
    }

    #[test]
    fn errors_name_the_row() {
        let e = bind("x,c\n1,z\n2,q\n", CsvColumns::Header).unwrap_err();
        assert_eq!((e.kind(), e.row(), e.column()), ("unknown_category", Some(1), Some("c")));
        let e = bind("x,c\n1,z,3\n", CsvColumns::Header).unwrap_err();
        assert!(e.to_string().contains("row 0 has 3 fields, the header has 2"), "{e}");
        let e = bind("a,b\n1,2\n", CsvColumns::Header).unwrap_err();
        assert_eq!(e.kind(), "unknown_columns", "{e}");
        let e = bind("1\n", CsvColumns::Positional).unwrap_err();
        assert_eq!(e.kind(), "wrong_feature_count");
    }

    #[test]
    fn tab_and_semicolon_tables_are_read_as_such() {
        let comma = bind("x,c\n1,z\n", CsvColumns::Header).unwrap();
        for text in ["x\tc\n1\tz\n", "x;c\n1;z\n"] {
            assert_eq!(bind(text, CsvColumns::Header).unwrap(), comma, "{text:?}");
        }
        assert_eq!(sniff_delimiter(b"\"a;b\",c\n"), b',', "separators inside quotes do not count");
        assert_eq!(sniff_delimiter(b"a\n1;2\n"), b',', "only the header line counts");
    }

    #[test]
    fn a_quoted_field_that_never_closes_is_an_error() {
        // Two fields per record either way: without the check, rows 1 and 2 would be one cell.
        let e = bind("x,c\n1,z\n2,\"z\n3,z\n", CsvColumns::Header).unwrap_err();
        assert_eq!(e.kind(), "malformed_csv", "{e}");
        assert!(e.to_string().contains("opened on line 3 is never closed"), "{e}");
        let e = bind("1,\"z\n", CsvColumns::Positional).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        // Closed quotes, escaped quotes and a quote inside an unquoted field are fine.
        let rows = bind("x,c\n1,\"a,b\"\n\"2\",\"z\"\n", CsvColumns::Header).unwrap();
        assert_eq!(rows.rows, 2);
        let mut q = QuoteScan::new(b',');
        q.scan(b"a\"b,\"say \"\"hi\"\"\"\n");
        assert_eq!(q.unterminated(), None);
        q.scan(b"\"open");
        assert_eq!(q.unterminated(), Some(2));
    }
}
