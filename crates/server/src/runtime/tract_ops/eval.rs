//! TreeEnsembleClassifier: evaluation (the trees in ORT's order, the
//! post-transforms).

use super::*;

/// Input element the trees compare against their f32 thresholds: f32 as is,
/// f64 in double precision (like ORT's mixed-type comparison). Integer inputs
/// are cast to f32 first, as C++ does when comparing them to a float.
pub(super) trait Feature: Copy + PartialOrd {
    fn threshold(t: f32) -> Self;
    fn is_nan(self) -> bool;
}

impl Feature for f32 {
    #[inline(always)]
    fn threshold(t: f32) -> Self {
        t
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Feature for f64 {
    #[inline(always)]
    fn threshold(t: f32) -> Self {
        t as f64
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

/// Branch comparison, monomorphised for the uniform-mode fast path.
pub(super) trait Compare {
    fn go_true<T: Feature>(x: T, t: T) -> bool;
}

macro_rules! compare {
    ($name: ident, $x: ident, $t: ident, $e: expr) => {
        pub(super) struct $name;
        impl Compare for $name {
            #[inline(always)]
            fn go_true<T: Feature>($x: T, $t: T) -> bool {
                $e
            }
        }
    };
}
compare!(CmpLeq, x, t, x <= t);
compare!(CmpLt, x, t, x < t);
compare!(CmpGte, x, t, x >= t);
compare!(CmpGt, x, t, x > t);
compare!(CmpEq, x, t, x == t);
compare!(CmpNeq, x, t, x != t);

impl Ensemble {
    /// Descends one tree for one row with a single comparison for all branches
    /// and no missing-value tracking (NaN compares false, except for `!=`).
    #[inline(always)]
    pub(super) fn leaf_uniform<C: Compare, T: Feature>(&self, root: u32, row: &[T]) -> Node {
        let mut node = self.nodes[root as usize];
        while node.feature != LEAF {
            let x = row[node.feature as usize];
            let next = if C::go_true(x, T::threshold(node.value)) {
                node.true_id
            } else {
                node.false_id
            };
            node = self.nodes[next as usize];
        }
        node
    }

    /// Descends one tree for one row, reading each node's mode and missing flag.
    pub(super) fn leaf_generic<T: Feature>(&self, root: u32, row: &[T]) -> Node {
        let mut at = root as usize;
        loop {
            let node = self.nodes[at];
            if node.feature == LEAF {
                return node;
            }
            let flags = self.flags[at];
            let x = row[node.feature as usize];
            let t = T::threshold(node.value);
            let go_true = match Mode::from_flags(flags) {
                Mode::Leq => x <= t,
                Mode::Lt => x < t,
                Mode::Gte => x >= t,
                Mode::Gt => x > t,
                Mode::Eq => x == t,
                Mode::Neq => x != t,
            } || (flags & MISSING_TRUE != 0 && x.is_nan());
            at = if go_true { node.true_id } else { node.false_id } as usize;
        }
    }

    pub(super) fn eval<T: Feature>(
        &self,
        x: &[T],
        stride: usize,
        picks: &mut [Pick],
        probs: &mut [f32],
    ) -> TractResult<()> {
        match self.uniform {
            Some(Mode::Leq) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpLeq, T>(r, row)
            }),
            Some(Mode::Lt) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpLt, T>(r, row)
            }),
            Some(Mode::Gte) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpGte, T>(r, row)
            }),
            Some(Mode::Gt) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpGt, T>(r, row)
            }),
            Some(Mode::Eq) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpEq, T>(r, row)
            }),
            Some(Mode::Neq) => self.eval_with(x, stride, picks, probs, |r, row| {
                self.leaf_uniform::<CmpNeq, T>(r, row)
            }),
            None => self.eval_with(x, stride, picks, probs, |r, row| self.leaf_generic(r, row)),
        }
    }

    /// How ORT (`TreeEnsembleCommon::ComputeAgg`) splits the trees for a call
    /// with `n_rows` rows: one sequential sum, or (when it parallelizes over
    /// trees) one partial sum per thread over consecutive trees, added up in
    /// thread order afterwards. Float addition is not associative, so following
    /// the same split is what makes exact ties (e.g. a 50/50 forest vote) come
    /// out with ORT's label.
    pub(super) fn tree_chunks(&self, n_rows: usize) -> Vec<std::ops::Range<usize>> {
        let n_trees = self.roots.len();
        let threads = self.ort_threads.max(1);
        let by_trees = if n_rows == 1 {
            n_trees > ORT_PARALLEL_TREE && threads > 1
        } else {
            n_rows > ORT_PARALLEL_N && threads > 1 && n_trees >= threads
        };
        if !by_trees {
            return std::iter::once(0..n_trees).collect();
        }
        let parts = threads.min(n_trees);
        let (per, extra) = (n_trees / parts, n_trees % parts);
        (0..parts)
            .map(|i| {
                let start = if i < extra {
                    (per + 1) * i
                } else {
                    per * i + extra
                };
                start..start + per + (i < extra) as usize
            })
            .collect()
    }

    /// Sums the leaf weights tree after tree (in ORT's order and split, see
    /// [`Ensemble::tree_chunks`]), a block of rows at a time with the tree loop
    /// outside, then finalizes each row.
    #[inline(always)]
    pub(super) fn eval_with<T: Feature, F: Fn(u32, &[T]) -> Node>(
        &self,
        x: &[T],
        stride: usize,
        picks: &mut [Pick],
        probs: &mut [f32],
        leaf: F,
    ) -> TractResult<()> {
        let c = self.n_classes();
        let n_rows = picks.len();
        let chunks = self.tree_chunks(n_rows);
        let block = ROW_BLOCK.min(n_rows) * c;
        let mut scores = vec![0f32; block * chunks.len()];
        let mut has = vec![false; scores.len()];
        for start in (0..n_rows).step_by(ROW_BLOCK) {
            let end = (start + ROW_BLOCK).min(n_rows);
            let rows = end - start;
            scores.fill(0.0);
            has.fill(false);
            for (chunk, trees) in chunks.iter().enumerate() {
                let scores = &mut scores[chunk * block..][..rows * c];
                let has = &mut has[chunk * block..][..rows * c];
                for &root in &self.roots[trees.clone()] {
                    for r in 0..rows {
                        let row = &x[(start + r) * stride..][..stride];
                        let l = leaf(root, row);
                        let s = &mut scores[r * c..][..c];
                        let h = &mut has[r * c..][..c];
                        for w in &self.weights[l.true_id as usize..l.false_id as usize] {
                            s[w.class as usize] += w.value;
                            h[w.class as usize] = true;
                        }
                    }
                }
            }
            // ORT's MergePrediction: later partial sums into the first one.
            let (first_s, rest_s) = scores.split_at_mut(block);
            let (first_h, rest_h) = has.split_at_mut(block);
            for chunk in 1..chunks.len() {
                let s = &rest_s[(chunk - 1) * block..][..rows * c];
                let h = &rest_h[(chunk - 1) * block..][..rows * c];
                for k in 0..rows * c {
                    if h[k] {
                        first_s[k] += s[k];
                        first_h[k] = true;
                    }
                }
            }
            for r in 0..rows {
                picks[start + r] = self.finalize(
                    &mut first_s[r * c..][..c],
                    &mut first_h[r * c..][..c],
                    &mut probs[(start + r) * c..][..c],
                )?;
            }
        }
        Ok(())
    }

    /// ORT's `TreeAggregatorClassifier::FinalizeScores` for one row: adds the
    /// base values, picks the label, and writes the (post-transformed) scores.
    /// A score that never received a weight counts as 0 when written.
    pub(super) fn finalize(
        &self,
        s: &mut [f32],
        has: &mut [bool],
        z: &mut [f32],
    ) -> TractResult<Pick> {
        let base = &self.base_values;
        if s.len() > 2 {
            for (k, &b) in base.iter().enumerate() {
                if has[k] {
                    s[k] += b;
                } else {
                    s[k] = b;
                    has[k] = true;
                }
            }
            let mut best: Option<usize> = None;
            for k in 0..s.len() {
                if has[k] && best.is_none_or(|b| s[k] > s[b]) {
                    best = Some(k);
                }
            }
            let Some(best) = best else {
                bail!("TreeEnsembleClassifier: no tree gave any score to this row");
            };
            for k in 0..s.len() {
                z[k] = if has[k] { s[k] } else { 0.0 };
            }
            write_scores(z, self.post_transform);
            return Ok(Pick::Class(best));
        }

        // Two classes.
        let mut add_second_class: i32 = -1;
        let mut len = 2;
        match base.len() {
            2 => {
                if has[1] {
                    // Sic: ORT ignores base_values[0] and the class-1 sum here.
                    s[1] = base[1] + s[0];
                    s[0] = -s[1];
                } else {
                    s[1] += base[1];
                    s[0] += base[0];
                }
            }
            1 => {
                s[0] += base[0];
                if !has[1] {
                    len = 1;
                }
            }
            0 => {
                add_second_class = 3;
                if !has[1] {
                    len = 1;
                }
            }
            _ => (),
        }
        let (s0, h0, s1, h1) = if len == 2 && has[1] {
            (s[0], has[0], s[1], true)
        } else {
            (s[0], has[0], 0.0, false)
        };
        let pos_weight = if h1 {
            s1
        } else if h0 {
            s0
        } else {
            0.0
        };
        let pick = if self.binary_case {
            let positive = if self.weights_all_positive {
                pos_weight > 0.5
            } else {
                pos_weight > 0.0
            };
            add_second_class = match (self.weights_all_positive, positive) {
                (true, true) => 0,
                (true, false) => 1,
                (false, true) => 2,
                (false, false) => 3,
            };
            Pick::Class(positive as usize)
        } else {
            Pick::Literal((pos_weight > 0.0) as i64)
        };

        let e0 = if has[0] { s[0] } else { 0.0 };
        if len == 2 {
            z[0] = e0;
            z[1] = if has[1] { s[1] } else { 0.0 };
            write_scores(z, self.post_transform);
        } else if self.post_transform == PostTransform::Probit {
            // ORT leaves the second column unwritten (uninitialized) here.
            z[0] = probit(e0);
            z[1] = 0.0;
        } else {
            // ORT 1.31 applies LOGISTIC here whatever the weights' signs (older
            // versions wrote `[1 - s, s]` for all-positive weights).
            match add_second_class {
                0..=3 if self.post_transform == PostTransform::Logistic => {
                    z[0] = logistic(-e0);
                    z[1] = logistic(e0);
                }
                0 | 1 => {
                    z[0] = 1.0 - e0;
                    z[1] = e0;
                }
                2 | 3 => {
                    z[0] = -e0;
                    z[1] = e0;
                }
                _ => {
                    z[0] = e0;
                    z[1] = 0.0;
                }
            }
        }
        Ok(pick)
    }
}

/// ORT's `write_scores` for two or more scores, in place.
pub(super) fn write_scores(z: &mut [f32], post: PostTransform) {
    match post {
        PostTransform::None => (),
        PostTransform::Logistic => z.iter_mut().for_each(|v| *v = logistic(*v)),
        PostTransform::Probit => z.iter_mut().for_each(|v| *v = probit(*v)),
        PostTransform::Softmax => {
            let max = z.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
            let mut sum = 0f32;
            for v in z.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            z.iter_mut().for_each(|v| *v /= sum);
        }
        PostTransform::SoftmaxZero => {
            let max = z.iter().fold(-f32::MAX, |m, &v| if v > m { v } else { m });
            let exp_neg_max = (-max).exp();
            let mut sum = 0f32;
            for v in z.iter_mut() {
                if *v > 0.000_000_1 || *v < -0.000_000_1 {
                    *v = (*v - max).exp();
                    sum += *v;
                } else {
                    *v *= exp_neg_max;
                }
            }
            z.iter_mut().for_each(|v| *v /= sum);
        }
    }
}

pub(super) fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

/// ORT's approximate inverse error function (Winitzki, a = 0.147).
pub(super) fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

pub(super) fn probit(x: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * x - 1.0)
}
