//! What quantization cost: per-layer SQNR of weights and activations against the float model,
//! end-to-end logit SQNR and top-1 agreement, as a table or JSON.

use std::collections::HashMap;
use std::fmt::Write;

use cait_core::{Point, Site, Tap};
use cait_pack::ModelConfig;
use serde_json::{Value, json};

use super::mixed::MixedReport;
use super::observe::Energy;

/// One measured alternative of a quantization choice.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The value (`mse`, `alpha=0.5`, `qk=int8 av=f32` ...).
    pub value: String,
    /// End-to-end logit SQNR against the float model, dB.
    pub logit_sqnr_db: f64,
    /// Fraction of images whose top-1 class equals the float model's.
    pub top1_agreement: f64,
}

/// A choice the quantizer made, with what it measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// What was chosen (`calibration`, `smoothing`, `attention`).
    pub name: String,
    /// The value kept.
    pub chosen: String,
    /// Every alternative measured (empty when the value was given).
    pub candidates: Vec<Candidate>,
    /// Why this one.
    pub reason: String,
}

/// One row of the per-layer table.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRow {
    /// `blocks.3.attn.qkv`, `blocks.3.attn.q@k`, `blocks.3` (the block's output) ...
    pub name: String,
    /// SQNR of the stored weights against the float (folded) weights, dB; `None` without weights.
    pub weight_sqnr_db: Option<f64>,
    /// SQNR of each input activation (or, for a block row, its output) against the float run, dB.
    pub activations: Vec<(String, f64)>,
}

/// The quantization report.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// `int8` or `f16`.
    pub precision: String,
    /// Held-out images the logits (and the per-layer activations) were measured on: images the
    /// ranges were not fitted on and the choices were not made on (f16: the calibration images,
    /// nothing being fitted).
    pub images: usize,
    /// Images the activation ranges and smoothing factors were fitted on (int8).
    pub fit_images: usize,
    /// Held-out images the choices were compared on (int8).
    pub select_images: usize,
    /// Per-layer rows, in network order.
    pub layers: Vec<LayerRow>,
    /// End-to-end logit SQNR against the float model, dB (`None` without calibration data).
    pub logit_sqnr_db: Option<f64>,
    /// Top-1 agreement with the float model (`None` without calibration data).
    pub top1_agreement: Option<f64>,
    /// The choices made and their measurements.
    pub choices: Vec<Choice>,
    /// What the user should know about these figures (too few held-out images ...).
    pub warnings: Vec<String>,
    /// Mixed precision, when a budget was given: the blocks kept in f16 and what they bought.
    pub mixed: Option<MixedReport>,
}

fn tap(site: Site, point: Point) -> Tap {
    Tap { site, point }
}

/// Builds the rows from weight energies (by layer name) and activation energies (by tap).
pub(crate) fn layers(
    cfg: &ModelConfig,
    weights: &[(String, Energy)],
    acts: &HashMap<Tap, Energy>,
) -> Vec<LayerRow> {
    let weight: HashMap<&str, f64> = weights
        .iter()
        .map(|(n, e)| (n.as_str(), e.sqnr_db()))
        .collect();
    let mut rows = Vec::new();
    let mut row = |name: String, w: Option<&str>, inputs: &[(&str, Tap)]| {
        let activations: Vec<(String, f64)> = inputs
            .iter()
            .filter_map(|(label, t)| acts.get(t).map(|e| (label.to_string(), e.sqnr_db())))
            .collect();
        let weight_sqnr_db = w.and_then(|w| weight.get(w).copied());
        if weight_sqnr_db.is_some() || !activations.is_empty() {
            rows.push(LayerRow {
                name,
                weight_sqnr_db,
                activations,
            });
        }
    };
    let pe = Site::PatchEmbed;
    row(
        "patch_embed.proj".into(),
        Some("patch_embed.proj"),
        &[
            ("input", tap(pe, Point::Input)),
            ("output", tap(pe, Point::Output)),
        ],
    );
    let blocks = (0..cfg.depth)
        .map(|i| (format!("blocks.{i}"), Site::Block(i)))
        .chain(
            (0..cfg.depth_token_only)
                .map(|i| (format!("blocks_token_only.{i}"), Site::TokenBlock(i))),
        );
    for (prefix, site) in blocks {
        let t = |p| tap(site, p);
        let fused = matches!(site, Site::Block(_));
        if fused {
            let n = format!("{prefix}.attn.qkv");
            row(n.clone(), Some(&n), &[("norm1", t(Point::Norm1))]);
        } else {
            // q, k and v share their input, norm1(u).
            for x in ["q", "k", "v"] {
                let n = format!("{prefix}.attn.{x}");
                let inputs: &[(&str, Tap)] = if x == "q" {
                    &[("norm1", t(Point::Norm1))]
                } else {
                    &[]
                };
                row(n.clone(), Some(&n), inputs);
            }
        }
        row(
            format!("{prefix}.attn.q@k"),
            None,
            &[("q", t(Point::Q)), ("k", t(Point::K))],
        );
        row(
            format!("{prefix}.attn.attn@v"),
            None,
            &[("attn", t(Point::Attention)), ("v", t(Point::V))],
        );
        let n = format!("{prefix}.attn.proj");
        row(n.clone(), Some(&n), &[("attn_out", t(Point::AttentionOut))]);
        let n = format!("{prefix}.mlp.fc1");
        row(n.clone(), Some(&n), &[("norm2", t(Point::Norm2))]);
        let n = format!("{prefix}.mlp.fc2");
        row(n.clone(), Some(&n), &[("gelu", t(Point::Hidden))]);
        row(prefix.clone(), None, &[("output", t(Point::Output))]);
    }
    row(
        "head".into(),
        Some("head"),
        &[("features", tap(Site::Head, Point::Input))],
    );
    rows
}

/// `Some(x)` for a finite SQNR, `None` (JSON `null`) for an exact one.
fn db(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 100.0).round() / 100.0)
    } else {
        Value::Null
    }
}

fn db_text(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "exact".into()
    }
}

impl Report {
    /// The report as one JSON object (SQNRs in dB rounded to 0.01; `null` where exact). Figures
    /// that were not measured (f16 without calibration data; `mixed` without a budget) are
    /// absent, not `null`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "precision": self.precision,
            "images": self.images,
            "fit_images": self.fit_images,
            "select_images": self.select_images,
            "warnings": self.warnings,
            "logit_sqnr_db": self.logit_sqnr_db.map(db),
            "top1_agreement": self.top1_agreement,
            "mixed": self.mixed.as_ref().map(|m| json!({
                "budget": m.budget,
                "unit": m.unit,
                "f16_blocks": m.kept,
                "sensitivity": m.sensitivity.iter().map(|(b, v)| json!({"block": b, "logit_sqnr_db": db(*v)})).collect::<Vec<_>>(),
                "selection_int8": m.selection.0,
                "selection": m.selection.1,
                "met_on_selection": m.met_on_selection,
                "held_out": m.held_out,
                "met_on_held_out": m.met_on_held_out,
                "added_bytes": m.added_bytes,
            })),
            "layers": self.layers.iter().map(|l| json!({
                "name": l.name,
                "weight_sqnr_db": l.weight_sqnr_db.map(db),
                "activation_sqnr_db": l.activations.iter().map(|(k, v)| (k.clone(), db(*v))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "choices": self.choices.iter().map(|c| json!({
                "name": c.name,
                "chosen": c.chosen,
                "reason": c.reason,
                "candidates": c.candidates.iter().map(|k| json!({
                    "value": k.value,
                    "logit_sqnr_db": db(k.logit_sqnr_db),
                    "top1_agreement": k.top1_agreement,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        if let Value::Object(map) = &mut v {
            let measured = |k: &str| match k {
                "logit_sqnr_db" | "top1_agreement" => self.logit_sqnr_db.is_some(),
                "mixed" => self.mixed.is_some(),
                _ => true,
            };
            map.retain(|k, _| measured(k));
        }
        v
    }

    /// The report as a readable table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        if self.fit_images > 0 {
            let _ = writeln!(
                s,
                "{} quantization: ranges fitted on {} image(s), choices made on {} other(s), figures measured against the float model on {} held-out image(s)",
                self.precision, self.fit_images, self.select_images, self.images
            );
        } else {
            let _ = writeln!(
                s,
                "{} quantization, measured against the float model on {} image(s)",
                self.precision, self.images
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        for c in &self.choices {
            let _ = writeln!(s, "  {:<17} {:<27} {}", c.name, c.chosen, c.reason);
            for k in &c.candidates {
                let _ = writeln!(
                    s,
                    "  {:<17}   {:<25} logit SQNR {:>6} dB, top-1 agreement {:.1}%",
                    "",
                    k.value,
                    db_text(k.logit_sqnr_db),
                    100.0 * k.top1_agreement
                );
            }
        }
        if let Some(m) = &self.mixed {
            let kept = if m.kept.is_empty() {
                "none".to_string()
            } else {
                m.kept.join(", ")
            };
            let _ = writeln!(
                s,
                "  {:<17} {:<27} {} (all-int8 {:.2} → {:.2} on {} selection images; {:.2} on {} held-out: {})",
                "mixed",
                kept,
                m.budget,
                m.selection.0,
                m.selection.1,
                self.select_images,
                m.held_out,
                self.images,
                if m.met_on_held_out { "met" } else { "not met" }
            );
            for (b, v) in &m.sensitivity {
                let _ = writeln!(
                    s,
                    "  {:<17}   {:<25} logit SQNR {:>6} dB with only it in f16",
                    "",
                    b,
                    db_text(*v)
                );
            }
            let _ = writeln!(
                s,
                "  {:<17}   the f16 blocks add {} bytes to the pack",
                "", m.added_bytes
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  {:<34} {:>10}   activations SQNR dB (input; block rows: output)",
            "layer", "weights dB"
        );
        for l in &self.layers {
            let w = l.weight_sqnr_db.map_or("-".to_string(), db_text);
            let a: Vec<String> = l
                .activations
                .iter()
                .map(|(k, v)| format!("{k} {}", db_text(*v)))
                .collect();
            let _ = writeln!(s, "  {:<34} {:>10}   {}", l.name, w, a.join("  "));
        }
        if let (Some(sqnr), Some(agree)) = (self.logit_sqnr_db, self.top1_agreement) {
            let _ = writeln!(
                s,
                "\n  logits: SQNR {} dB, top-1 agreement {:.2}% ({} held-out images)",
                db_text(sqnr),
                100.0 * agree,
                self.images
            );
        }
        s
    }
}
