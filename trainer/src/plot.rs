//! The SVG plots (plotters' SVG backend): `training_curves.svg`, train and validation loss per
//! epoch, and the chart frame `tuning.svg` shares.

use inference::record::EpochRecord;
use plotters::coord::types::{RangedCoordf64, RangedCoordusize};
use plotters::prelude::*;

/// The chart the SVG plots share.
pub type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordusize, RangedCoordf64>>;

/// `lo..hi` padded by 5% (a unit range when empty or flat).
pub fn padded(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 0.5, lo + 0.5)
    } else {
        (0.0, 1.0)
    };
    let pad = (hi - lo) * 0.05;
    (lo - pad)..(hi + pad)
}

/// A 720×420 SVG chart with `title`, axis labels `axes`, the series `draw` adds, and their legend.
pub fn svg_chart(
    title: &str,
    axes: (&str, &str),
    x: std::ops::Range<usize>,
    y: std::ops::Range<f64>,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> Result<(), String>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x, y)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc(axes.0).y_desc(axes.1).draw().map_err(|e| e.to_string())?;
        draw(&mut chart)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Render the loss curves as an SVG document.
pub fn training_curves_svg(history: &[EpochRecord], title: &str) -> Result<String, String> {
    let losses = history.iter().flat_map(|r| std::iter::once(r.train_loss).chain(r.val_loss));
    let epochs = history.len().max(2);
    svg_chart(title, ("epoch", "loss"), 1usize..epochs, padded(losses), |chart| {
        chart
            .draw_series(LineSeries::new(history.iter().map(|r| (r.epoch, r.train_loss)), &BLUE))
            .map_err(|e| e.to_string())?
            .label("train loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE));
        if history.iter().any(|r| r.val_loss.is_some()) {
            chart
                .draw_series(LineSeries::new(history.iter().filter_map(|r| r.val_loss.map(|v| (r.epoch, v))), &RED))
                .map_err(|e| e.to_string())?
                .label("validation loss")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_curves() {
        let h: Vec<EpochRecord> = (1..=5)
            .map(|e| EpochRecord {
                epoch: e,
                train_loss: 1.0 / e as f64,
                val_loss: Some(1.2 / e as f64),
                val_accuracy: Some(0.5),
                val_r2: None,
            })
            .collect();
        let svg = training_curves_svg(&h, "t").unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("validation loss") && svg.contains("train loss"));
        assert!(svg.matches("<polyline").count() >= 2, "{svg}");
    }
}
