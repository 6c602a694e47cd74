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
}
