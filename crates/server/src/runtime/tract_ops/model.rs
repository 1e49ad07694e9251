//! TreeEnsembleClassifier: the model (flattened trees, modes, post-transforms,
//! labels).

use super::*;

/// Marks a leaf in [`Node::feature`].
pub(super) const LEAF: u32 = u32::MAX;
/// Rows evaluated together (tree loop outside, row loop inside), like ORT.
pub(super) const ROW_BLOCK: usize = 128;
/// ORT's `parallel_tree_`: more trees than this and a single row is summed per thread.
pub(super) const ORT_PARALLEL_TREE: usize = 80;
/// ORT's `parallel_N_`: more rows than this and the trees are summed per thread.
pub(super) const ORT_PARALLEL_N: usize = 50;

/// ORT intra-op thread count the tree summation order is matched to; 0 means
/// "not set": use ORT's default (the number of physical cores).
pub(super) static ORT_THREADS: AtomicUsize = AtomicUsize::new(0);

/// One tree node, 16 bytes. Branch: `x[feature] <cmp> value` goes to `true_id`,
/// otherwise `false_id`. Leaf (`feature == LEAF`): its weights are
/// `weights[true_id..false_id]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Node {
    pub(super) feature: u32,
    pub(super) value: f32,
    pub(super) true_id: u32,
    pub(super) false_id: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
}

/// Per-node flag: the missing value (NaN) goes to the true branch.
pub(super) const MISSING_TRUE: u8 = 0x80;

impl Mode {
    pub(super) fn parse(s: &str) -> TractResult<Option<Mode>> {
        Ok(Some(match s {
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            "LEAF" => return Ok(None),
            other => bail!("Unsupported tree node mode {other}"),
        }))
    }

    pub(super) fn from_flags(flags: u8) -> Mode {
        match flags & 0x7 {
            0 => Mode::Leq,
            1 => Mode::Lt,
            2 => Mode::Gte,
            3 => Mode::Gt,
            4 => Mode::Eq,
            _ => Mode::Neq,
        }
    }

    pub(super) fn flags(self) -> u8 {
        match self {
            Mode::Leq => 0,
            Mode::Lt => 1,
            Mode::Gte => 2,
            Mode::Gt => 3,
            Mode::Eq => 4,
            Mode::Neq => 5,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl PostTransform {
    /// The node's `post_transform` attribute (`NONE` when absent).
    pub(super) fn of(node: &NodeProto) -> TractResult<PostTransform> {
        PostTransform::parse(
            node.get_attr_opt::<&str>("post_transform")?
                .unwrap_or("NONE"),
        )
    }

    pub(super) fn parse(s: &str) -> TractResult<PostTransform> {
        Ok(match s {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => bail!("Invalid post_transform {other}"),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Weight {
    pub(super) class: u32,
    pub(super) value: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Labels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl Labels {
    pub(super) fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Str(v) => v.len(),
        }
    }

    pub(super) fn datum_type(&self) -> DatumType {
        match self {
            Labels::Int(_) => i64::datum_type(),
            Labels::Str(_) => String::datum_type(),
        }
    }
}

/// Which label a row gets: a class index, or (ORT's two-class fallback when the
/// weights name both classes) the literal positive/negative label 1/0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pick {
    Class(usize),
    Literal(i64),
}

/// Everything the classifier needs, shared by the inference-time expansion and
/// the typed op.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Ensemble {
    pub(super) nodes: Vec<Node>,
    /// Per node: [`Mode::flags`] | [`MISSING_TRUE`]; only read on the generic path.
    pub(super) flags: Vec<u8>,
    /// `Some(mode)` when every branch uses `mode` and none sends NaN to true.
    pub(super) uniform: Option<Mode>,
    pub(super) roots: Vec<u32>,
    pub(super) weights: Vec<Weight>,
    /// Largest feature id mentioned by any node (ORT checks it against the input).
    pub(super) max_feature: usize,
    pub(super) labels: Labels,
    pub(super) base_values: Vec<f32>,
    pub(super) post_transform: PostTransform,
    /// Two classes and every leaf weight names the same class id.
    pub(super) binary_case: bool,
    pub(super) weights_all_positive: bool,
    /// ORT thread count whose tree summation order is reproduced.
    pub(super) ort_threads: usize,
}

impl Ensemble {
    pub(super) fn n_classes(&self) -> usize {
        self.labels.len()
    }
}
