//! The held-out protocol: which images fit the ranges, which choose, which report.
//!
//! Nothing the quantizer states is measured on the images it fitted:
//! - **fit**: activation ranges, histograms and per-channel smoothing factors;
//! - **select**: the choices (calibration method, smoothing, attention modes) are compared here;
//! - **report**: the logit SQNR and top-1 agreement in the summary, the pack's metadata and
//!   `--report` are measured here, on images neither the ranges nor the choices saw.
//!
//! Without a hold-out set the calibration images are dealt round-robin by index — image `i` goes to
//! fit when `i mod 4` is 0 or 1, to select when it is 2, to report when it is 3 — so a set sorted
//! by class still spreads every class over the three parts. With a hold-out set (`--holdout`) every
//! calibration image fits, and the hold-out images are dealt alternately to select (even index)
//! and report (odd).

use cait_data::Dataset;

use super::QuantError;

/// Fewest images a part may hold: below this the quantizer refuses rather than overfit silently.
pub const MIN_PART_IMAGES: usize = 2;
/// Fewer report images than this get a warning: the held-out figures rest on too few images to
/// tell a few tenths of a dB apart.
pub const FEW_REPORT_IMAGES: usize = 32;

/// The three disjoint parts.
#[derive(Clone, Debug)]
pub(crate) struct Parts {
    pub(crate) fit: Dataset,
    pub(crate) select: Dataset,
    pub(crate) report: Dataset,
}

/// The images of `set` whose index satisfies `keep`, at most `cap` of them (0 = all).
fn subset(set: &Dataset, cap: usize, keep: impl Fn(usize) -> bool) -> Dataset {
    let idx: Vec<usize> = (0..set.n).filter(|&i| keep(i)).collect();
    let idx = if cap > 0 && idx.len() > cap {
        &idx[..cap]
    } else {
        &idx[..]
    };
    let mut images = Vec::with_capacity(idx.len() * set.sample_len());
    for &i in idx {
        images.extend_from_slice(set.image(i));
    }
    Dataset {
        images,
        labels: set
            .labels
            .as_ref()
            .map(|l| idx.iter().map(|&i| l[i]).collect()),
        n: idx.len(),
        sample_shape: set.sample_shape,
        class_names: set.class_names.clone(),
    }
}

/// Splits as the module docs say; `select_cap` bounds the select part (0 = no bound).
pub(crate) fn split(
    calib: &Dataset,
    holdout: Option<&Dataset>,
    select_cap: usize,
) -> Result<Parts, QuantError> {
    let parts = match holdout {
        None => Parts {
            fit: subset(calib, 0, |i| i % 4 < 2),
            select: subset(calib, select_cap, |i| i % 4 == 2),
            report: subset(calib, 0, |i| i % 4 == 3),
        },
        Some(h) => Parts {
            fit: subset(calib, 0, |_| true),
            select: subset(h, select_cap, |i| i % 2 == 0),
            report: subset(h, 0, |i| i % 2 == 1),
        },
    };
    if parts.fit.n < MIN_PART_IMAGES
        || parts.select.n < MIN_PART_IMAGES
        || parts.report.n < MIN_PART_IMAGES
    {
        return Err(QuantError::TooFewImages {
            calibration: calib.n,
            holdout: holdout.map(|h| h.n),
            parts: [parts.fit.n, parts.select.n, parts.report.n],
        });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> Dataset {
        Dataset {
            images: (0..n).map(|i| i as f32).collect(),
            labels: Some((0..n as u32).collect()),
            n,
            sample_shape: [1, 1, 1],
            class_names: None,
        }
    }

    #[test]
    fn parts_are_disjoint_and_cover_the_set() {
        let p = split(&set(10), None, 0).unwrap();
        assert_eq!(p.fit.images, [0.0, 1.0, 4.0, 5.0, 8.0, 9.0]);
        assert_eq!(p.select.images, [2.0, 6.0]);
        assert_eq!(p.report.images, [3.0, 7.0]);
        assert_eq!(p.report.labels.as_deref(), Some(&[3, 7][..]));
        // The select cap keeps the first ones.
        let p = split(&set(40), None, 3).unwrap();
        assert_eq!(p.select.images, [2.0, 6.0, 10.0]);
        assert_eq!(p.report.n, 10);
    }

    #[test]
    fn a_holdout_set_selects_and_reports() {
        let h = Dataset {
            images: vec![10.0, 11.0, 12.0, 13.0, 14.0],
            ..set(5)
        };
        let p = split(&set(3), Some(&h), 0).unwrap();
        assert_eq!(p.fit.n, 3);
        assert_eq!(p.select.images, [10.0, 12.0, 14.0]);
        assert_eq!(p.report.images, [11.0, 13.0]);
    }

    #[test]
    fn too_few_images_is_an_error() {
        match split(&set(7), None, 0) {
            Err(QuantError::TooFewImages { parts, .. }) => assert_eq!(parts, [4, 2, 1]),
            other => panic!("{other:?}"),
        }
        assert!(split(&set(8), None, 0).is_ok());
        assert!(split(&set(1), Some(&set(9)), 0).is_err());
        assert!(split(&set(2), Some(&set(3)), 0).is_err());
    }
}
