//! The files a search leaves beside the winner's bundle: `tuning.csv` (one row per trial)
//! and `tuning.svg` (each trial's validation loss and the best so far, over trials).

use plotters::prelude::*;

use super::{TrialState, TuningRecord};

/// File name of the trial table.
pub const CSV_FILE: &str = "tuning.csv";
/// File name of the best-so-far plot.
pub const SVG_FILE: &str = "tuning.svg";

/// The trial table: number, state, loss and its standard error, epochs, seconds, then one
/// column per tuned field.
pub fn csv(record: &TuningRecord) -> Result<Vec<u8>, String> {
    let keys: Vec<String> = record
        .trials
        .first()
        .and_then(|t| t.params.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let mut w = csv::Writer::from_writer(Vec::new());
    let head = ["number", "state", "best_val_loss", "best_val_loss_se", "epochs_run", "seconds"].map(str::to_owned);
    w.write_record(head.iter().chain(&keys)).map_err(|e| e.to_string())?;
    for t in &record.trials {
        let state = serde_json::to_value(t.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let mut row = vec![
            t.number.to_string(),
            state,
            t.best_val_loss.map(|l| l.to_string()).unwrap_or_default(),
            t.best_val_loss_se.map(|l| l.to_string()).unwrap_or_default(),
            t.epochs_run.to_string(),
            format!("{:.3}", t.seconds),
        ];
        for k in &keys {
            row.push(match t.params.get(k) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            });
        }
        w.write_record(&row).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// Each trial's best validation loss (pruned ones hollow) and the best so far.
pub fn svg(record: &TuningRecord) -> Result<String, String> {
    let points: Vec<(usize, f64, TrialState)> =
        record.trials.iter().filter_map(|t| t.best_val_loss.map(|l| (t.number, l, t.state))).collect();
    let mut best = f64::INFINITY;
    let best_so_far: Vec<(usize, f64)> = record
        .trials
        .iter()
        .filter_map(|t| {
            if t.state == TrialState::Completed {
                best = best.min(t.best_val_loss.unwrap_or(f64::INFINITY));
            }
            best.is_finite().then_some((t.number, best))
        })
        .collect();
    let n = record.trials.len().max(2);
    let y = crate::plot::padded(points.iter().map(|p| p.1));
    crate::plot::svg_chart("hyperparameter search", ("trial", "validation loss"), 0usize..n, y, |chart| {
        chart
            .draw_series(points.iter().map(|&(x, y, state)| {
                let style = if state == TrialState::Completed { BLUE.filled() } else { BLUE.stroke_width(1) };
                Circle::new((x, y), 3, style)
            }))
            .map_err(|e| e.to_string())?
            .label("trial (hollow: pruned)")
            .legend(|(x, y)| Circle::new((x + 9, y), 3, BLUE.filled()));
        chart
            .draw_series(LineSeries::new(best_so_far.iter().copied(), &RED))
            .map_err(|e| e.to_string())?
            .label("best so far")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::super::{TrialRecord, TuneOptions};
    use super::*;

    #[test]
    fn the_table_and_the_plot_show_every_trial() {
        let trial = |number, state, loss: f64| TrialRecord {
            number,
            state,
            params: serde_json::json!({"hidden_dims": [32, 32], "optimizer": "adamw"}),
            rung_losses: vec![],
            best_val_loss: Some(loss),
            best_val_loss_se: (state == TrialState::Completed).then_some(0.05),
            epochs_run: 4,
            seconds: 0.25,
            error: None,
        };
        let record = TuningRecord {
            options: TuneOptions::default(),
            trials: vec![
                trial(0, TrialState::Completed, 0.9),
                trial(1, TrialState::Pruned, 1.2),
                trial(2, TrialState::Completed, 0.5),
            ],
            best_trial: 2,
            best_val_loss: 0.5,
            lowest_trial: None,
            selected_by: "the lowest validation loss".into(),
            confirmation: None,
            seconds: 1.0,
            stopped_by: "trials".into(),
        };
        let text = String::from_utf8(csv(&record).unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "number,state,best_val_loss,best_val_loss_se,epochs_run,seconds,hidden_dims,optimizer");
        assert_eq!(lines[2], "1,pruned,1.2,,4,0.250,\"[32,32]\",adamw");
        assert!(lines[1].starts_with("0,completed,0.9,0.05,4,"), "{}", lines[1]);
        assert_eq!(lines.len(), 4);
        let s = svg(&record).unwrap();
        assert!(s.starts_with("<svg") && s.contains("best so far") && s.matches("<circle").count() >= 3);
    }
}
