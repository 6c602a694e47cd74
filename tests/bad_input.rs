//! Every malformed dataset ends in a typed error with a useful message (or a documented
//! acceptance), never a panic, and nothing is written under the models directory.

mod common;

use std::path::{Path, PathBuf};

use common::{entries, run, stderr, trainer};

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    fn models(&self) -> PathBuf {
        self.dir.path().join("models")
    }

    /// Train on `data`; returns (success, stderr).
    fn train(&self, data: &Path, target: &str, extra: &[&str]) -> (bool, String) {
        let epochs: &[&str] = if extra.contains(&"--epochs") { &[] } else { &["--epochs", "2"] };
        let o = run(trainer()
            .args(["train", "--target", target, "--data"])
            .arg(data)
            .arg("--models-dir")
            .arg(self.models())
            .args(epochs)
            .args(extra));
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "panic: {err}");
        (o.status.success(), err)
    }

    /// Expect a DataLoadError (exit 3) containing `needle`, and an untouched models dir.
    fn rejects(&self, data: &Path, target: &str, needle: &str) {
        let (ok, err) = self.train(data, target, &[]);
        assert!(!ok, "accepted {}", data.display());
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
        assert!(entries(&self.models()).iter().all(|e| !e.starts_with("model_")), "a model was written");
    }

    fn metadata(&self) -> serde_json::Value {
        let id = entries(&self.models()).into_iter().find(|e| e.starts_with("model_")).expect("no model written");
        serde_json::from_slice(&std::fs::read(self.models().join(id).join("metadata.json")).unwrap()).unwrap()
    }
}

/// A valid CSV body of `n` rows: x (numeric), c (text), y (2 classes).
fn rows(n: usize) -> String {
    (0..n).map(|i| format!("{},{},{}\n", i as f32 * 0.5, ["p", "q", "r"][i % 3], ["a", "b"][i % 2])).collect()
}

#[test]
fn structural_csv_errors() {
    let c = Case::new();
    c.rejects(&c.file("empty.csv", b""), "y", "is empty");
    c.rejects(&c.file("header.csv", b"x,c,y\n"), "y", "no data rows");
    c.rejects(&c.file("ragged.csv", format!("x,c,y\n1,p,a\n2,q\n{}", rows(20)).as_bytes()), "y", "line 3");
    let mut bad = b"x,c,y\n1,p,a\n2,q\xff\xfe,b\n".to_vec();
    bad.extend(rows(20).as_bytes());
    c.rejects(&c.file("utf8.csv", &bad), "y", "line 3: invalid UTF-8 in column `c`");
    c.rejects(&c.file("dup.csv", format!("x,x,y\n{}", rows(20)).as_bytes()), "y", "duplicate column name `x`");
    c.rejects(&c.file("blank.csv", format!("x, ,y\n{}", rows(20)).as_bytes()), "y", "column 2 has a blank name");
    c.rejects(&c.file("data.csv", format!("x,c,y\n{}", rows(20)).as_bytes()), "label", "columns are: x, c, y");
    c.rejects(c.dir.path(), "y", "is a directory");
    c.rejects(&c.file("data.parquet", b"PAR1"), "y", "expected a .csv or .json");
}

#[test]
fn target_problems() {
    let c = Case::new();
    let all_missing: String = (0..20).map(|i| format!("{i},p,\n")).collect();
    let (ok, err) = c.train(&c.file("t.csv", format!("x,c,y\n{all_missing}").as_bytes()), "y", &[]);
    assert!(!ok && err.contains("all missing"), "{err}");
}

#[test]
fn bom_and_quoted_fields_are_accepted() {
    let c = Case::new();
    let mut body = String::from("\u{feff}x,c,y\n");
    for i in 0..30 {
        body.push_str(&format!("{i},\"has, comma\nand newline {}\",{}\n", i % 2, ["a", "b"][i % 2]));
    }
    let (ok, err) = c.train(&c.file("bom.csv", body.as_bytes()), "y", &[]);
    assert!(ok, "{err}");
    let m = c.metadata();
    assert_eq!(m["preprocessing"]["feature_names"], serde_json::json!(["x", "c"]));
    let cats = &m["preprocessing"]["features"][1]["categories"];
    assert!(cats.as_array().unwrap().iter().any(|v| v == "has, comma\nand newline 1"), "{cats}");
}

#[test]
fn all_missing_feature_is_dropped_with_a_warning() {
    let c = Case::new();
    let body: String = (0..30).map(|i| format!("{i},,{}\n", ["a", "b"][i % 2])).collect();
    let (ok, err) = c.train(&c.file("m.csv", format!("x,empty,y\n{body}").as_bytes()), "y", &[]);
    assert!(ok, "{err}");
    let m = c.metadata();
    assert_eq!(m["preprocessing"]["dropped_columns"][0]["name"], "empty");
    assert!(m["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("`empty`")));
}

#[test]
fn high_cardinality_text_is_dropped_unless_allowed() {
    let body: String = (0..1200).map(|i| format!("{i},id{i},{}\n", ["a", "b"][i % 2])).collect();
    let c = Case::new();
    let f = c.file("hc.csv", format!("x,ident,y\n{body}").as_bytes());
    let (ok, err) = c.train(&f, "y", &[]);
    assert!(ok, "{err}");
    let dropped = &c.metadata()["preprocessing"]["dropped_columns"][0];
    assert_eq!(dropped["name"], "ident");
    assert!(dropped["reason"].as_str().unwrap().contains("max_categories = 1000"), "{dropped}");
    let c2 = Case::new();
    let f2 = c2.file("hc.csv", format!("x,ident,y\n{body}").as_bytes());
    let (ok, err) = c2.train(&f2, "y", &["--max-categories", "5000"]);
    assert!(ok, "{err}");
    assert_eq!(c2.metadata()["preprocessing"]["feature_names"], serde_json::json!(["x", "ident"]));
}

#[test]
fn number_spellings() {
    // Accepted as numbers: 1e3, " 42 ", -0, +5; NaN is missing; "1,5" makes the column text.
    let c = Case::new();
    let mut body = String::from("n,eu,y\n1e3,\"1,5\",a\n\" 42 \",2,b\n-0,3,a\n+5,4,b\nNaN,5,a\n");
    body.push_str(&(0..20).map(|i| format!("{i},{i},{}\n", ["a", "b"][i % 2])).collect::<String>());
    let (ok, err) = c.train(&c.file("n.csv", body.as_bytes()), "y", &[]);
    assert!(ok, "{err}");
    let f = &c.metadata()["preprocessing"]["features"];
    assert_eq!(f[0]["kind"], "numeric");
    assert_eq!(f[1]["kind"], "categorical");
    // inf is rejected with its row and column.
    let c = Case::new();
    let body =
        format!("n,y\n1,a\ninf,b\n{}", (0..20).map(|i| format!("{i},{}\n", ["a", "b"][i % 2])).collect::<String>());
    c.rejects(
        &c.file("inf.csv", body.as_bytes()),
        "y",
        "row 3: column `n` holds an infinite number or one beyond f32's range",
    );
}

#[test]
fn json_shapes() {
    let c = Case::new();
    c.rejects(&c.file("num.json", b"42"), "y", "expected an array of records or an object of column arrays");
    c.rejects(&c.file("arr.json", b"[1, 2, 3]"), "y", "record 0 is not an object");
    c.rejects(&c.file("nested.json", br#"[{"x": [1, 2], "y": "a"}]"#), "y", "nested value");
    c.rejects(&c.file("syntax.json", b"[{\"x\": 1,"), "y", "invalid JSON");
    let records: Vec<serde_json::Value> = (0..30)
        .map(|i| {
            let (c, y) = (["p", "q"][i % 2], ["a", "b"][i % 2]);
            serde_json::json!({"x": i, "c": c, "y": y})
        })
        .collect();
    let (ok, err) = c.train(&c.file("records.json", serde_json::to_vec(&records).unwrap().as_slice()), "y", &[]);
    assert!(ok, "{err}");
}

#[test]
fn text_only_features_train() {
    let c = Case::new();
    let body: String =
        (0..40).map(|i| format!("{},{},{}\n", ["p", "q"][i % 2], ["u", "v", "w"][i % 3], ["a", "b"][i % 2])).collect();
    let (ok, err) = c.train(&c.file("t.csv", format!("c1,c2,y\n{body}").as_bytes()), "y", &["--epochs", "40"]);
    assert!(ok, "{err}");
    let acc = c.metadata()["test_metrics"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.9, "c1 determines y: accuracy {acc}");
}

#[test]
fn data_users_bring_is_read_or_refused_never_silently_misread() {
    let c = Case::new();
    // An unclosed quote would otherwise swallow every later line into one cell.
    let mut body = format!("x,c,y\n{}", rows(10));
    body.push_str("5,p,\"a\n");
    body.push_str(&rows(20));
    c.rejects(&c.file("quote.csv", body.as_bytes()), "y", "line 12: a quoted field opened here is never closed");
    // Integer labels past 2^24 would merge as f32 and name classes the data never held.
    let big: String = (0..40).map(|i| format!("{i},p,{}\n", 100_000_001 + i % 2)).collect();
    let (ok, err) = c.train(&c.file("big.csv", format!("x,c,y\n{big}").as_bytes()), "y", &["--task", "classification"]);
    assert!(!ok && err.contains("beyond ±16,777,216"), "{err}");
    // Tab- and semicolon-separated files are read as such.
    for (name, sep) in [("t.tsv", "\t"), ("s.csv", ";")] {
        let body = format!("x,c,y\n{}", rows(30)).replace(',', sep);
        let (ok, err) = c.train(&c.file(name, body.as_bytes()), "y", &[]);
        assert!(ok, "{name}: {err}");
    }
    // One stray token in a numeric column is named, with what it costs.
    let stray: String = (0..40)
        .map(|i| format!("{},{}\n", if i == 7 { "?".into() } else { i.to_string() }, ["a", "b"][i % 2]))
        .collect();
    let (ok, err) = c.train(&c.file("stray.csv", format!("m,y\n{stray}").as_bytes()), "y", &[]);
    assert!(
        ok && err.contains("column `m` is categorical because 1 of its 40 values are not numbers (e.g. \"?\")"),
        "{err}"
    );
    // A JSON file with a byte-order mark.
    let json: String =
        (0..30).map(|i| format!(r#"{{"x": {i}, "y": "{}"}}"#, ["a", "b"][i % 2])).collect::<Vec<_>>().join(",");
    let (ok, err) = c.train(&c.file("bom.json", format!("\u{feff}[{json}]").as_bytes()), "y", &[]);
    assert!(ok, "{err}");
}

#[test]
fn an_unusable_models_dir_fails_before_training() {
    let c = Case::new();
    let file = c.file("not-a-dir", b"x");
    let o = run(trainer()
        .args(["train", "--target", "y", "--epochs", "2", "--data"])
        .arg(c.file("d.csv", format!("x,c,y\n{}", rows(30)).as_bytes()))
        .arg("--models-dir")
        .arg(&file));
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("not-a-dir"), "{err}");
    assert!(!err.contains("epoch "), "it trained first: {err}");
}
