//! Mixed precision to an accuracy budget: which blocks an int8 pack keeps in f16.
//!
//! With a [`Budget`], once the int8 choices are made, the all-int8 pack is measured on the
//! **select** images. If it misses the budget, each block's sensitivity is measured there too — the
//! logit SQNR of the pack with only that block kept in f16 — and blocks are kept in f16 most
//! sensitive first, re-measuring after each, until the budget holds. The pack records each kept
//! block by its weights' dtype (`cait_pack::int8::is_f16_block`); the report states, on the
//! **report** images, whether the budget holds there too. A budget no mix meets gives the best mix
//! measured and a warning saying so.

use cait_core::Site;

use super::QuantError;

/// An accuracy budget for `cait quantize --precision int8`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Top-1 accuracy at most this many points (percent) below the float model's, on labelled
    /// held-out images (`--max-drop`).
    MaxDrop(f64),
    /// Logit SQNR against the float model at least this many dB (`--min-sqnr`; needs no labels).
    MinSqnr(f64),
}

impl Budget {
    /// `top-1 drop ≤ 0.1 points`, `logit SQNR ≥ 30 dB`.
    pub fn describe(&self) -> String {
        match self {
            Budget::MaxDrop(p) => format!("top-1 drop ≤ {p} points"),
            Budget::MinSqnr(db) => format!("logit SQNR ≥ {db} dB"),
        }
    }

    /// The figure the budget bounds, as measured: the accuracy drop in points, or the SQNR in dB.
    pub(crate) fn figure(&self, m: &Measured) -> f64 {
        match self {
            Budget::MaxDrop(_) => m.drop_points.unwrap_or(f64::INFINITY),
            Budget::MinSqnr(_) => m.sqnr_db,
        }
    }

    /// How far `m` is inside the budget, in its unit (≥ 0: met).
    pub(crate) fn margin(&self, m: &Measured) -> f64 {
        match self {
            Budget::MaxDrop(p) => p - self.figure(m),
            Budget::MinSqnr(db) => self.figure(m) - db,
        }
    }

    /// The unit of [`figure`](Self::figure): `points` or `dB`.
    pub fn unit(&self) -> &'static str {
        match self {
            Budget::MaxDrop(_) => "points",
            Budget::MinSqnr(_) => "dB",
        }
    }

    /// `0.20 points`, `31.42 dB`.
    pub(crate) fn figure_text(&self, m: &Measured) -> String {
        format!("{:.2} {}", self.figure(m), self.unit())
    }
}

/// One pack measured against the float model on a set of images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Measured {
    /// Logit SQNR, dB.
    pub(crate) sqnr_db: f64,
    /// Top-1 agreement, a fraction.
    pub(crate) agreement: f64,
    /// Float top-1 accuracy minus the pack's, in points (`None` without labels).
    pub(crate) drop_points: Option<f64>,
    /// Bytes of the pack.
    pub(crate) bytes: usize,
}

/// What mixed precision chose and measured (in the [`Report`](super::Report)).
#[derive(Clone, Debug, PartialEq)]
pub struct MixedReport {
    /// The budget, as the user gave it (`logit SQNR ≥ 30 dB`).
    pub budget: String,
    /// The unit of the figures below (`dB`, or `points` of top-1 accuracy drop).
    pub unit: &'static str,
    /// Blocks kept in f16, in the order they were added (`blocks.3`, `blocks_token_only.0`).
    pub kept: Vec<String>,
    /// Each block's sensitivity on the selection images: the logit SQNR (dB) with only that block
    /// kept in f16, most sensitive first (empty when the all-int8 pack met the budget).
    pub sensitivity: Vec<(String, f64)>,
    /// The budget's figure on the selection images, all-int8 and with the kept blocks.
    pub selection: (f64, f64),
    /// Whether the kept blocks meet the budget on the selection images.
    pub met_on_selection: bool,
    /// The budget's figure on the report (held-out) images, with the kept blocks.
    pub held_out: f64,
    /// Whether the budget holds on the report images.
    pub met_on_held_out: bool,
    /// Bytes the f16 blocks add to the all-int8 pack.
    pub added_bytes: usize,
}

/// `blocks.3` / `blocks_token_only.1`.
pub(crate) fn block_name(site: Site) -> String {
    match site {
        Site::Block(i) => format!("blocks.{i}"),
        Site::TokenBlock(i) => format!("blocks_token_only.{i}"),
        Site::PatchEmbed => "patch_embed".into(),
        Site::Head => "head".into(),
    }
}

/// What [`choose`] found.
#[derive(Debug)]
pub(crate) struct Chosen {
    /// The blocks to keep in f16, in the order added.
    pub(crate) kept: Vec<Site>,
    /// `(block, SQNR with only it kept)`, most sensitive first.
    pub(crate) sensitivity: Vec<(Site, f64)>,
    /// The kept blocks' measurement on the selection images.
    pub(crate) measured: Measured,
}

/// Greedy choice (see the module docs): `base` is the all-int8 pack's measurement, `measure`
/// measures a pack keeping the given blocks in f16 on the selection images. The most sensitive
/// block is the one whose keeping alone gives the highest logit SQNR (a continuous figure, so a
/// top-1 budget on few images still ranks the blocks). Ends at the first mix that meets the
/// budget, or, when none does, at the best measured.
pub(crate) fn choose(
    blocks: &[Site],
    base: Measured,
    budget: Budget,
    mut measure: impl FnMut(&[Site]) -> Result<Measured, QuantError>,
) -> Result<Chosen, QuantError> {
    let mut best = Chosen {
        kept: Vec::new(),
        sensitivity: Vec::new(),
        measured: base,
    };
    if budget.margin(&base) >= 0.0 {
        return Ok(best);
    }
    let mut sensitivity = Vec::with_capacity(blocks.len());
    for &b in blocks {
        sensitivity.push((b, measure(&[b])?.sqnr_db));
    }
    // Stable: ties keep network order.
    sensitivity.sort_by(|a, b| b.1.total_cmp(&a.1));
    best.sensitivity = sensitivity.clone();
    let mut kept = Vec::new();
    for &(b, _) in &sensitivity {
        kept.push(b);
        let m = measure(&kept)?;
        if budget.margin(&m) > budget.margin(&best.measured) {
            best.kept = kept.clone();
            best.measured = m;
        }
        if budget.margin(&m) >= 0.0 {
            break;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(sqnr_db: f64) -> Measured {
        Measured {
            sqnr_db,
            agreement: 1.0,
            drop_points: None,
            bytes: 0,
        }
    }

    /// A stand-in response: each block adds its own gain in dB (the real packs are measured in
    /// `tests.rs`; this checks the order and the stopping rule).
    fn additive(gains: &[f64]) -> impl FnMut(&[Site]) -> Result<Measured, QuantError> + '_ {
        move |kept| {
            let g: f64 = kept
                .iter()
                .map(|s| match s {
                    Site::Block(i) => gains[*i as usize],
                    _ => 0.0,
                })
                .sum();
            Ok(m(20.0 + g))
        }
    }

    #[test]
    fn keeps_the_most_sensitive_blocks_until_the_budget_holds() {
        let blocks: Vec<Site> = (0..4).map(Site::Block).collect();
        let gains = [1.0, 5.0, 0.5, 3.0];
        let c = choose(&blocks, m(20.0), Budget::MinSqnr(27.5), additive(&gains)).unwrap();
        assert_eq!(c.kept, vec![Site::Block(1), Site::Block(3)]);
        assert_eq!(c.measured.sqnr_db, 28.0);
        assert_eq!(c.sensitivity[0], (Site::Block(1), 25.0));
    }

    #[test]
    fn a_met_budget_keeps_nothing_and_measures_nothing() {
        let blocks: Vec<Site> = (0..4).map(Site::Block).collect();
        let c = choose(&blocks, m(30.0), Budget::MinSqnr(27.5), |_| {
            Err(QuantError::Internal("measured".into()))
        })
        .unwrap();
        assert!(c.kept.is_empty() && c.sensitivity.is_empty());
    }

    #[test]
    fn an_unreachable_budget_gives_the_best_mix_measured() {
        let blocks: Vec<Site> = (0..3).map(Site::Block).collect();
        // Keeping block 2 makes things worse: the best is blocks 0 and 1.
        let gains = [2.0, 1.0, -4.0];
        let c = choose(&blocks, m(20.0), Budget::MinSqnr(40.0), additive(&gains)).unwrap();
        assert_eq!(c.kept, vec![Site::Block(0), Site::Block(1)]);
        assert!(Budget::MinSqnr(40.0).margin(&c.measured) < 0.0);
    }

    #[test]
    fn a_drop_budget_reads_the_drop() {
        let b = Budget::MaxDrop(0.1);
        let mut x = m(30.0);
        x.drop_points = Some(0.05);
        assert!(b.margin(&x) > 0.0);
        x.drop_points = Some(0.2);
        assert!(b.margin(&x) < 0.0);
        x.drop_points = None;
        assert!(b.margin(&x) < 0.0);
    }
}
