use super::*;

#[test]
fn empty_file_is_the_default_pipeline() {
    let c = Config::parse("", "hoist.toml").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.environments[0].name, "staging");
    assert_eq!(c.model.trigger, Trigger::Alias("champion".into()));
}

#[test]
fn full_file_parses() {
    let text = r#"
[registry]
url = "embedded"
poll_interval = "250ms"

[model]
name = "fraud"
trigger = { stage = "Production" }

[analysis]
max_p99_ms = 50
min_requests = 5

[[environments]]
name = "staging"
listen = "127.0.0.1:9001"
strategy = "blue-green"
scale_down_delay = "10s"

[[environments]]
name = "production"
listen = "127.0.0.1:9002"
replicas = 2
approval = true
steps = [{ weight = 10, pause = "1m" }, { weight = 50, pause = true }]
analysis = { max_error_rate = 0.05 }
"#;
    let c = Config::parse(text, "hoist.toml").unwrap();
    assert_eq!(c.model.trigger, Trigger::Stage("Production".into()));
    assert_eq!(c.registry.poll_interval.0, Duration::from_millis(250));
    let p = &c.environments[1];
    assert_eq!(p.replicas, 2);
    assert_eq!(p.steps[0].pause, Pause::For(Duration::from_secs(60)));
    assert_eq!(p.steps[1].pause, Pause::UntilPromoted);
    let a = c.analysis.with(&p.analysis);
    assert_eq!(a.max_error_rate, 0.05);
    assert_eq!(a.max_p99_ms, 50.0);
    assert_eq!(
        c.environments[0].scale_down_delay.0,
        Duration::from_secs(10)
    );
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err = Config::parse("[model]\nname = \"x\"\ntriger = \"manual\"\n", "hoist.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("triger"), "{err}");
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn bad_weight_is_named_with_its_line() {
    let text =
        "[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\nsteps = [{ weight = 150 }]\n";
    let err = Config::parse(text, "hoist.toml").unwrap_err().to_string();
    assert!(err.contains("weight must be a percentage"), "{err}");
    assert!(err.contains("line 4"), "{err}");
}

#[test]
fn falling_weights_are_refused_with_the_key() {
    let text = "[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\nsteps = [{ weight = 50 }, { weight = 20 }]\n";
    let err = Config::parse(text, "hoist.toml").unwrap_err().to_string();
    assert!(err.contains("environments[0].steps[1].weight"), "{err}");
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn gates_and_notifications_parse() {
    let text = r#"
[[gates]]
kind = "golden-set"
file = "golden.csv"
min_accuracy = 0.9
min_recall = { "1" = 0.95 }

[[gates]]
kind = "latency"
max_p99_ms = 50

[[gates]]
kind = "command"
run = ["pytest", "-q"]

[[notifications]]
url = "http://127.0.0.1:9/hook"
kind = "slack"
events = ["rolled_back"]
"#;
    let c = Config::parse(text, "hoist.toml").unwrap();
    assert_eq!(c.gates.len(), 3);
    assert!(
        matches!(&c.gates[0], Gate::GoldenSet { min_recall, label, .. } if min_recall["1"] == 0.95 && label == "label")
    );
    assert!(matches!(
        &c.gates[1],
        Gate::Latency {
            concurrency: 4,
            requests: 200,
            ..
        }
    ));
    assert_eq!(c.notifications[0].kind, NotificationKind::Slack);
    let err = Config::parse("[[gates]]\nkind = \"vibes\"\n", "hoist.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("vibes") && err.contains("line 2"), "{err}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert!(parse_duration("5 parsecs").is_err());
    assert!(parse_duration("soon").is_err());
    assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    assert_eq!(format_duration(Duration::from_secs(120)), "2m");
}

#[test]
fn duplicate_environment_is_refused() {
    let text = "[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\n[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:2\"\n";
    let err = Config::parse(text, "hoist.toml").unwrap_err().to_string();
    assert!(err.contains("declared twice"), "{err}");
    assert!(err.contains("line 4"), "{err}");
}

#[test]
fn comparison_and_drift_bin_keys_are_checked_and_reach_the_servers() {
    let env = |analysis: &str| {
        format!(
            "[analysis]\nmax_p95_ms = 80\n[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:1\"\nanalysis = {{ {analysis} }}\n"
        )
    };
    let c = Config::parse(
        &env("drift_bins = [100, 150.5, 200], error_tolerance = 0.01, max_p50_ms = 20"),
        "hoist.toml",
    )
    .unwrap();
    let a = c.analysis.with(&c.environments[0].analysis);
    assert_eq!(a.max_p95_ms, Some(80.0), "inherited from [analysis]");
    assert_eq!(a.max_p50_ms, Some(20.0));
    assert_eq!(a.error_tolerance, 0.01);
    assert!(a.compare_errors, "on by default");
    assert_eq!(
        c.server_args(&c.environments[0]),
        vec!["--prediction-bins", "100,150.5,200"]
    );
    // No bins: no flag.
    let c = Config::parse(&env("max_p50_ms = 20"), "hoist.toml").unwrap();
    assert!(c.server_args(&c.environments[0]).is_empty());
    for (analysis, want) in [
        (
            "drift_bins = [200, 100]",
            "environments[0].analysis.drift_bins: edges must be strictly ascending; 200 is followed by 100",
        ),
        (
            "error_tolerance = 2.0",
            "environments[0].analysis.error_tolerance: must be a share from 0 to 1",
        ),
        (
            "max_p50_ms = 0",
            "environments[0].analysis.max_p50_ms: must be above 0",
        ),
    ] {
        let err = Config::parse(&env(analysis), "hoist.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{analysis}: {err}");
    }
}

#[test]
fn listen_may_be_left_out_on_a_cluster_only() {
    let env = "[[environments]]\nname = \"production\"\n";
    let err = Config::parse(env, "hoist.toml").unwrap_err().to_string();
    assert!(
        err.contains("environments[0].listen: missing") && err.contains("target = \"kubernetes\""),
        "{err}"
    );
    let text = format!(
        "target = \"kubernetes\"\n[kubernetes]\nimage = \"hoist@sha256:{}\"\nmodel_path = \"/m\"\n{env}",
        "ab".repeat(32)
    );
    let c = Config::parse(&text, "hoist.toml").unwrap();
    assert_eq!(c.environments[0].listen, NO_LISTEN);
}

#[test]
fn the_python_of_mlflow_models_is_a_server_key() {
    let c = Config::parse(
        "[server]\npython = \"/opt/venv/bin/python\"\nmlflow_args = [\"--workers\", \"2\"]\n",
        "hoist.toml",
    )
    .unwrap();
    assert_eq!(c.server.python.as_deref(), Some("/opt/venv/bin/python"));
    assert_eq!(c.server.mlflow_args, ["--workers", "2"]);
    assert_eq!(Config::default().server.python, None);
    let err = Config::parse("[server]\npython = \"  \"\n", "hoist.toml").unwrap_err();
    assert!(err.to_string().contains("server.python"), "{err}");
    let err =
        Config::parse("[server]\nmlflow_args = [\"-p\", \"80\"]\n", "hoist.toml").unwrap_err();
    assert!(
        err.to_string().contains("server.mlflow_args: `-p`"),
        "{err}"
    );
    let err = Config::parse("[server]\npyton = \"/usr/bin/python3\"\n", "hoist.toml").unwrap_err();
    assert!(err.to_string().contains("pyton"), "{err}");
}

#[test]
fn controller_secret_env_names_a_variable_and_a_secret_key() {
    let base = |table: &str| {
        format!(
            "[kubernetes.controller.secret_env]\n{table}\n[[environments]]\nname = \"p\"\nlisten = \"127.0.0.1:9\"\n"
        )
    };
    let c = Config::parse(
        &base("HOIST_WEBHOOK_SECRET = \"mlflow-webhook/secret\"\nSLACK = \"notify/url.txt\""),
        "hoist.toml",
    )
    .unwrap();
    assert_eq!(
        c.kubernetes.controller.secret_env_refs().unwrap(),
        [
            (
                "HOIST_WEBHOOK_SECRET".to_string(),
                "mlflow-webhook".to_string(),
                "secret".to_string()
            ),
            (
                "SLACK".to_string(),
                "notify".to_string(),
                "url.txt".to_string()
            ),
        ]
    );
    for (table, want) in [
        (
            "X = \"no-key\"",
            "secret_env.X: `no-key` must be \"<Secret name>/<key>\"",
        ),
        ("X = \"Bad_Name/k\"", "must be \"<Secret name>/<key>\""),
        ("X = \"s/\"", "must be \"<Secret name>/<key>\""),
        ("X = \"s/a b\"", "must be \"<Secret name>/<key>\""),
        (
            "\"1X\" = \"s/k\"",
            "`1X` is not an environment variable name",
        ),
        (
            "\"A-B\" = \"s/k\"",
            "`A-B` is not an environment variable name",
        ),
        ("T_FILE = \"s/k\"", "without `_FILE`"),
    ] {
        let err = Config::parse(&base(table), "hoist.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{table}: {err}");
        assert!(
            err.contains("kubernetes.controller.secret_env"),
            "{table}: {err}"
        );
    }
}

const TWO_ENVS: &str = r#"
[[environments]]
name = "staging"
listen = "127.0.0.1:9001"
strategy = "blue-green"

[[environments]]
name = "production"
listen = "127.0.0.1:9002"
steps = [{ weight = 10, pause = "1m" }, { weight = 50, pause = "1m" }]
"#;

#[test]
fn models_project_to_one_config_each() {
    let text = format!(
        r#"
[[models]]
name = "fraud"
trigger = {{ alias = "prod" }}
mid_rollout = "supersede"

[[models]]
name = "churn"
trigger = "manual"
environments = ["production"]
steps = [{{ weight = 25, pause = "5s" }}]
analysis = {{ max_error_rate = 0.2 }}
gates = [{{ kind = "signature" }}]
{TWO_ENVS}"#
    );
    let c = Config::parse(&text, "hoist.toml").unwrap();
    assert_eq!(c.model_names(), ["fraud", "churn"]);
    let per = c.per_model();
    assert_eq!(per.len(), 2);
    let (fraud, churn) = (&per[0], &per[1]);
    assert_eq!(fraud.model.name, "fraud");
    assert_eq!(fraud.model.trigger, Trigger::Alias("prod".into()));
    assert_eq!(fraud.model.mid_rollout, MidRollout::Supersede);
    assert_eq!(fraud.environments.len(), 2);
    assert_eq!(fraud.environments[1].steps.len(), 2);
    assert!(fraud.gates.is_empty());
    assert!(fraud.models.is_empty());
    assert_eq!(churn.model.trigger, Trigger::Manual);
    let names: Vec<&str> = churn.environments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["production"]);
    assert_eq!(churn.environments[0].steps.len(), 1);
    assert_eq!(churn.environments[0].steps[0].weight, Weight(25));
    assert_eq!(churn.analysis.max_error_rate, 0.2);
    assert_eq!(churn.gates.len(), 1);
    assert_eq!(c.for_model("churn").as_ref(), Some(churn));
    assert!(c.for_model("nope").is_none());
}

#[test]
fn one_model_table_is_one_projection() {
    let c = Config::parse("[model]\nname = \"fraud\"\n", "hoist.toml").unwrap();
    assert_eq!(c.model_names(), ["fraud"]);
    assert_eq!(c.per_model(), vec![c.clone()]);
}

#[test]
fn a_blue_green_model_drops_the_environments_steps() {
    let text = format!("[[models]]\nname = \"a\"\nstrategy = \"blue-green\"\n{TWO_ENVS}");
    let c = Config::parse(&text, "hoist.toml").unwrap();
    let a = &c.per_model()[0];
    assert!(
        a.environments
            .iter()
            .all(|e| e.strategy == StrategyKind::BlueGreen && e.steps.is_empty())
    );
}

fn refused(text: &str) -> String {
    Config::parse(text, "hoist.toml").unwrap_err().to_string()
}

#[test]
fn model_and_models_together_are_refused_with_lines() {
    let err = refused("[model]\nname = \"a\"\n\n[[models]]\nname = \"b\"\n");
    assert!(err.contains("[model] (line 1)"), "{err}");
    assert!(err.contains("[[models]] (line 4)"), "{err}");
}

#[test]
fn duplicate_model_names_are_refused_with_the_line() {
    let err = refused(&format!(
        "[[models]]\nname = \"a\"\n\n[[models]]\nname = \"a\"\n{TWO_ENVS}"
    ));
    assert!(
        err.contains("models[1].name: `a` is declared twice"),
        "{err}"
    );
    assert!(err.contains("line 4"), "{err}");
}

#[test]
fn model_names_a_request_path_cannot_carry_are_refused() {
    for name in ["a/b", "..", " a", "a\\u0007"] {
        let err = refused(&format!(
            "[[models]]\nname = \"ok\"\n\n[[models]]\nname = \"{name}\"\n{TWO_ENVS}"
        ));
        assert!(err.contains("models[1].name:"), "{name}: {err}");
        assert!(
            err.contains("cannot name a model in a request path"),
            "{name}: {err}"
        );
    }
    // Spaces inside a name are fine: clients escape them (fraud%20detector).
    assert!(
        Config::parse(
            &format!(
                "[[models]]\nname = \"fraud detector\"\n\n[[models]]\nname = \"b\"\n{TWO_ENVS}"
            ),
            "hoist.toml"
        )
        .is_ok()
    );
}

#[test]
fn unknown_model_keys_are_refused_with_the_line() {
    let err =
        refused("[[models]]\nname = \"a\"\n\n[[models]]\nname = \"b\"\ntriger = \"manual\"\n");
    assert!(err.contains("triger"), "{err}");
    assert!(err.contains("line 6"), "{err}");
}

#[test]
fn a_model_without_a_name_is_refused() {
    let err = refused("[[models]]\ntrigger = \"manual\"\n");
    assert!(err.contains("name"), "{err}");
}

#[test]
fn a_model_cannot_invent_an_environment() {
    let err = refused(&format!(
        "[[models]]\nname = \"a\"\nenvironments = [\"qa\"]\n{TWO_ENVS}"
    ));
    assert!(
        err.contains("models[0].environments: `qa` is not an environment"),
        "{err}"
    );
    assert!(err.contains("staging, production"), "{err}");
    assert!(err.contains("line 1"), "{err}");
    let err = refused(&format!(
        "[[models]]\nname = \"a\"\nenvironments = [\"production\", \"staging\"]\n{TWO_ENVS}"
    ));
    assert!(err.contains("out of order"), "{err}");
}

#[test]
fn a_models_overrides_are_validated_as_its_environments() {
    let err = refused(&format!(
        "[[models]]\nname = \"a\"\n\n[[models]]\nname = \"b\"\nsteps = [{{ weight = 50 }}, {{ weight = 10 }}]\n{TWO_ENVS}"
    ));
    assert!(err.contains("models[1] (`b`)"), "{err}");
    assert!(err.contains("weights must rise"), "{err}");
    assert!(err.contains("line 4"), "{err}");
}

#[test]
fn pack_is_refused_where_a_shared_server_cannot_serve() {
    let two = |names: [&str; 2], extra: &str| {
        format!(
            "[server]\npack = true\n\n[[models]]\nname = \"{}\"\n\n[[models]]\nname = \"{}\"\n{TWO_ENVS}{extra}",
            names[0], names[1]
        )
    };
    let ok = Config::parse(&two(["fraud", "churn.v2"], ""), "hoist.toml").unwrap();
    assert!(ok.server.pack);
    assert!(ok.per_model().iter().all(|m| m.server.pack));
    let err = refused(&two(["fraud detector", "b"], ""));
    assert!(err.contains("server.pack: model `fraud detector`"), "{err}");
    let err = refused(&two(["a", "b"], "replicas = 2\n"));
    assert!(
        err.contains("server.pack: environment production has replicas = 2"),
        "{err}"
    );
    let err = refused(&format!(
        "target = \"kubernetes\"\n\n[server]\npack = true\n\n[model]\nname = \"m\"\n\n\
         [kubernetes]\nimage = \"hoist@sha256:{}\"\nmodel_path = \"/m\"\n\n\
         [[environments]]\nname = \"production\"\n",
        "a".repeat(64)
    ));
    assert!(err.contains("server.pack"), "{err}");
    assert!(!Config::default().server.pack);
}
