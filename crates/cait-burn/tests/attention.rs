//! The class-attention maps the burn reference returns: softmax rows, and the same rows cait-core
//! hands its `AttentionSink`.

mod common;

use cait_burn::{BackendKind, Reference};
use cait_core::{AttentionSink, Model, Outputs, workspace_bytes};
use cait_import::{ImportOptions, load_checkpoint, write_pack_f32};
use cait_pack::Pack;
use common::{fixture, max_abs, npy};

struct Rows(Vec<(usize, usize, Vec<f32>)>);

impl AttentionSink for Rows {
    fn class_attention(&mut self, block: usize, head: usize, weights: &[f32]) {
        self.0.push((block, head, weights.to_vec()));
    }
}

#[test]
fn class_attention_rows_are_softmaxes_and_match_cait_core() {
    let path = fixture("tiny").join("model.safetensors");
    let input = npy("tiny", "input.npy").1;
    let reference = Reference::load(&path, &ImportOptions::default(), BackendKind::Cpu).unwrap();
    let cfg = *reference.config();
    let n_img = 2;
    let out = reference.forward(&input, n_img).unwrap();
    let h = cfg.num_heads as usize;
    let tokens = cfg.num_patches().unwrap() + 1;
    assert_eq!(out.attention.len(), cfg.depth_token_only as usize);

    // Rows sum to 1: f32 softmax over 17 keys, error a few ulps.
    for map in &out.attention {
        assert_eq!(map.len(), n_img * h * tokens);
        for row in map.chunks_exact(tokens) {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "row sums to {sum}");
            assert!(row.iter().all(|&p| p >= 0.0));
        }
    }

    // cait-core on the same checkpoint, image by image.
    let ckpt = load_checkpoint(&path, &ImportOptions::default()).unwrap();
    let bytes = write_pack_f32(&ckpt).unwrap();
    let mut storage = vec![0u64; bytes.len().div_ceil(8)];
    let raw = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut storage)[..bytes.len()];
    raw.copy_from_slice(&bytes);
    let pack = Pack::parse(raw).unwrap();
    let model = Model::from_pack(&pack).unwrap();
    let mut ws = vec![0u64; workspace_bytes(&cfg, pack.precision()).div_ceil(8)];
    let per = cfg.input_len().unwrap();
    let mut worst = 0.0f32;
    for (i, image) in input.chunks_exact(per).enumerate() {
        let mut logits = vec![0.0; cfg.logits_len()];
        let mut rows = Rows(Vec::new());
        model
            .forward_with(
                image,
                bytemuck::cast_slice_mut(&mut ws),
                Outputs::logits(&mut logits).attention(&mut rows),
            )
            .unwrap();
        assert_eq!(rows.0.len(), cfg.depth_token_only as usize * h);
        for (block, head, row) in rows.0 {
            let start = (i * h + head) * tokens;
            let ours = &out.attention[block][start..start + tokens];
            worst = worst.max(max_abs(ours, &row));
        }
    }
    // Both are within 1e-4 of timm's logits; probabilities in [0, 1] agree more tightly.
    assert!(
        worst < 1e-5,
        "burn vs cait-core attention max abs {worst:e}"
    );
}
