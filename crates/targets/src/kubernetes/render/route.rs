//! The Gateway API HTTPRoute that splits traffic, and reading its weights back.

use super::*;

/// The HTTPRoute with `candidate_weight` percent to the candidate Service. A request
/// with the force header (`x-hoist-variant: stable|candidate`) goes to that variant
/// whatever the weights.
pub fn http_route(spec: &AppSpec, candidate_weight: u32) -> HttpRoute {
    let w = candidate_weight.min(100) as i32;
    let backend = |v: Variant, weight: i32| HttpBackendRef {
        name: spec.name(v),
        port: Some(80),
        weight: Some(weight),
    };
    let mut rules = Vec::new();
    if let Some(h) = &spec.force_header {
        for v in [Variant::Candidate, Variant::Stable] {
            rules.push(HttpRouteRule {
                matches: vec![HttpRouteMatch {
                    path: None,
                    headers: vec![HttpHeaderMatch {
                        kind: "Exact".into(),
                        name: h.clone(),
                        value: v.as_str().into(),
                    }],
                }],
                backend_refs: vec![backend(v, 1)],
            });
        }
    }
    rules.push(HttpRouteRule {
        matches: vec![HttpRouteMatch {
            path: Some(HttpPathMatch {
                kind: "PathPrefix".into(),
                value: "/".into(),
            }),
            headers: Vec::new(),
        }],
        backend_refs: vec![
            backend(Variant::Stable, 100 - w),
            backend(Variant::Candidate, w),
        ],
    });
    let parent_refs = spec
        .gateway
        .iter()
        .map(|g| ParentReference {
            name: g.name.clone(),
            namespace: g.namespace.clone(),
            section_name: g.section_name.clone(),
        })
        .collect();
    HttpRoute::new(
        meta(spec, spec.app.clone(), BTreeMap::new()),
        HttpRouteSpec {
            parent_refs,
            hostnames: spec.hostnames.clone(),
            rules,
        },
    )
}

/// The candidate's share of an HTTPRoute's weighted rule, in percent (`None` when
/// the route has no such rule).
pub fn route_weight(route: &HttpRoute, spec: &AppSpec) -> Option<u32> {
    let rule = route
        .spec
        .rules
        .iter()
        .find(|r| r.backend_refs.len() == 2)?;
    let weight = |v: Variant| {
        rule.backend_refs
            .iter()
            .find(|b| b.name == spec.name(v))
            .map(|b| b.weight.unwrap_or(1).max(0) as u64)
    };
    let (s, c) = (weight(Variant::Stable)?, weight(Variant::Candidate)?);
    if s + c == 0 {
        return None;
    }
    Some(((c * 100 + (s + c) / 2) / (s + c)) as u32)
}
