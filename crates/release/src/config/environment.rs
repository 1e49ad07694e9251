//! `[[environments]]`: each environment's strategy, steps, weights and pauses.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub name: String,
    /// The gateway's address: clients send predictions here. Required with the local
    /// target; on a cluster (`target = "kubernetes"`) the cluster's Gateway or Service
    /// carries the traffic and it may be left out ([`NO_LISTEN`]).
    #[serde(default = "no_listen")]
    pub listen: SocketAddr,
    /// hoist-server processes per variant.
    #[serde(default = "one")]
    pub replicas: usize,
    #[serde(default)]
    pub strategy: StrategyKind,
    /// Canary steps (weight in percent of traffic to the candidate, and a pause).
    /// A final 100% step is implied.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Blue-green: how long the previous version stays warm after the switch, while
    /// the new one is judged on all traffic; a rollback in that time is instant.
    #[serde(default)]
    pub scale_down_delay: Dur,
    /// Wait for `hoist approve` before this environment takes any traffic.
    #[serde(default)]
    pub approval: bool,
    #[serde(default)]
    pub analysis: AnalysisOverride,
    /// Same value of this request header ⇒ same variant.
    #[serde(default)]
    pub sticky_header: Option<String>,
    /// Same value of this cookie ⇒ same variant.
    #[serde(default)]
    pub sticky_cookie: Option<String>,
    /// A request header whose value (`stable` or `candidate`) forces the variant.
    #[serde(default = "force_header")]
    pub force_header: String,
    /// How long the gateway waits for a model server to start answering a request
    /// before it answers 504 itself.
    #[serde(default = "sixty_seconds")]
    pub response_timeout: Dur,
    /// The name of an environment variable holding the token `POST /feedback` needs
    /// (`Authorization: Bearer <token>`); unset, anyone who reaches the gateway may
    /// post labels. The daemon refuses to start when the variable is empty.
    #[serde(default)]
    pub feedback_token_env: Option<String>,
}

pub(super) fn sixty_seconds() -> Dur {
    Dur(Duration::from_secs(60))
}

/// `listen` left out (only allowed on a cluster): 0.0.0.0:0.
pub const NO_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

pub(super) fn no_listen() -> SocketAddr {
    NO_LISTEN
}

pub(super) fn one() -> usize {
    1
}

pub(super) fn force_header() -> String {
    hoist_types::wire::headers::FORCE_VARIANT.into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    #[default]
    Canary,
    BlueGreen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Percent of live traffic the candidate answers (0 in a pure shadow step).
    #[serde(default)]
    pub weight: Weight,
    /// Percent of the requests stable answers that are also sent to the candidate,
    /// whose answers are compared with stable's and then discarded (a shadow step).
    #[serde(default)]
    pub shadow: Weight,
    #[serde(default)]
    pub pause: Pause,
}

/// A traffic share in percent, 0..=100.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Weight(pub u32);

impl TryFrom<i64> for Weight {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if (0..=100).contains(&v) {
            Ok(Weight(v as u32))
        } else {
            Err(format!(
                "weight must be a percentage from 0 to 100, not {v}"
            ))
        }
    }
}

impl From<Weight> for u32 {
    fn from(w: Weight) -> u32 {
        w.0
    }
}

/// How long a canary step holds: not at all, a duration (`"30s"`), or until
/// `hoist promote` (`pause = true`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PauseRepr", into = "PauseRepr")]
pub enum Pause {
    #[default]
    None,
    For(Duration),
    UntilPromoted,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum PauseRepr {
    Flag(bool),
    Text(String),
}

impl TryFrom<PauseRepr> for Pause {
    type Error = String;
    fn try_from(r: PauseRepr) -> Result<Self, String> {
        match r {
            PauseRepr::Flag(true) => Ok(Pause::UntilPromoted),
            PauseRepr::Flag(false) => Ok(Pause::None),
            PauseRepr::Text(s) if s == "manual" => Ok(Pause::UntilPromoted),
            PauseRepr::Text(s) => parse_duration(&s).map(|d| {
                if d.is_zero() {
                    Pause::None
                } else {
                    Pause::For(d)
                }
            }),
        }
    }
}

impl From<Pause> for PauseRepr {
    fn from(p: Pause) -> PauseRepr {
        match p {
            Pause::None => PauseRepr::Flag(false),
            Pause::UntilPromoted => PauseRepr::Flag(true),
            Pause::For(d) => PauseRepr::Text(format_duration(d)),
        }
    }
}
