//! [`Registry`] over MLflow's REST API.

use super::*;

impl Registry for MlflowRegistry {
    fn id(&self) -> String {
        self.base.clone()
    }

    fn list_models(&self) -> Result<Vec<RegisteredModel>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = vec![("max_results", "1000")];
            if !token.is_empty() {
                q.push(("page_token", &token));
            }
            let v = self.call("GET", "registered-models/search", &q, None, &|m| {
                Error::Invalid(m.to_string())
            })?;
            let page: ModelsPage = serde_json::from_value(v)
                .map_err(|e| self.bad_answer("registered-models/search", &e.to_string()))?;
            out.extend(page.registered_models.into_iter().map(RmJson::into_model));
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = t,
                _ => break,
            }
        }
        Ok(out)
    }

    fn list_versions(&self, name: &str) -> Result<Vec<ModelVersion>> {
        let filter = if name.contains('\'') {
            format!("name=\"{name}\"")
        } else {
            format!("name='{name}'")
        };
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = vec![("filter", filter.as_str()), ("max_results", "1000")];
            if !token.is_empty() {
                q.push(("page_token", &token));
            }
            let v = self.call(
                "GET",
                "model-versions/search",
                &q,
                None,
                &model_not_found(name),
            )?;
            let page: VersionsPage = serde_json::from_value(v)
                .map_err(|e| self.bad_answer("model-versions/search", &e.to_string()))?;
            out.extend(page.model_versions.into_iter().map(MvJson::into_version));
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = t,
                _ => break,
            }
        }
        if out.is_empty() {
            // An unknown model and a model without versions look alike in search.
            self.get_model_json(name)?;
        }
        out.sort_by_key(|v| std::cmp::Reverse(version_key(&v.version)));
        Ok(out)
    }

    fn get_version(&self, name: &str, version: &str) -> Result<ModelVersion> {
        let v = self.call(
            "GET",
            "model-versions/get",
            &[("name", name), ("version", version)],
            None,
            &version_not_found(name, version),
        )?;
        self.version_from(v, "model_version", "model-versions/get")
    }

    fn resolve(&self, r: &ModelRef) -> Result<ModelVersion> {
        let name = r.name.as_str();
        match &r.selector {
            Selector::Version(v) => self.get_version(name, v),
            Selector::Latest => self
                .list_versions(name)?
                .into_iter()
                .next()
                .ok_or_else(|| Error::ModelNotFound(format!("{name} (it has no versions)"))),
            Selector::Alias(alias) => {
                let v = self.call(
                    "GET",
                    "registered-models/alias",
                    &[("name", name), ("alias", alias)],
                    None,
                    &|m| {
                        if mentions_model_missing(m) {
                            Error::ModelNotFound(name.into())
                        } else {
                            Error::AliasNotFound {
                                name: name.into(),
                                alias: alias.clone(),
                            }
                        }
                    },
                )?;
                self.version_from(v, "model_version", "registered-models/alias")
            }
            Selector::Stage(stage) => {
                let v = self.call(
                    "POST",
                    "registered-models/get-latest-versions",
                    &[],
                    Some(&json!({"name": name, "stages": [stage]})),
                    &model_not_found(name),
                )?;
                let page: LatestVersions = serde_json::from_value(v).map_err(|e| {
                    self.bad_answer("registered-models/get-latest-versions", &e.to_string())
                })?;
                page.model_versions
                    .into_iter()
                    .map(MvJson::into_version)
                    .max_by_key(|v| version_key(&v.version))
                    .ok_or_else(|| Error::StageEmpty {
                        name: name.into(),
                        stage: stage.clone(),
                    })
            }
        }
    }

    fn fetch(&self, v: &ModelVersion) -> Result<Fetched> {
        let mut version = self.wait_ready(&v.name, &v.version)?;
        let store = ArtifactStore::open(&self.cache_dir)?;
        // Already fetched and recorded: use the cached copy, verified (never re-download
        // over a copy that changed: that is an error).
        if let Some(expected) = version.tags.get(DIGEST_TAG).cloned()
            && store.contains(&expected)
        {
            let dir = store.get(&expected)?;
            crate::check_package(&dir)?;
            version.digest = Some(expected.clone());
            return Ok(Fetched {
                version,
                dir,
                digest: expected,
            });
        }
        let uri = self.download_uri(&v.name, &v.version)?;
        // Under the store's tmp/, which it sweeps if we die mid-download.
        let tmp = store.root().join("tmp").join(format!(
            "mlflow-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let stored = self.download(&uri, &tmp).and_then(|()| store.put_dir(&tmp));
        let _ = std::fs::remove_dir_all(&tmp);
        let digest = stored?;
        // Refused before the digest is recorded anywhere.
        crate::check_package(&store.entry_path(&digest)?)?;
        match version.tags.get(DIGEST_TAG) {
            Some(expected) if *expected != digest => {
                return Err(Error::DigestMismatch {
                    what: format!("{} version {} ({uri})", v.name, v.version),
                    expected: expected.clone(),
                    found: digest,
                });
            }
            Some(_) => {}
            None => {
                self.set_tag(&v.name, &v.version, DIGEST_TAG, &digest)?;
                version.tags.insert(DIGEST_TAG.into(), digest.clone());
            }
        }
        version.digest = Some(digest.clone());
        // `put_dir` hashed the stored copy just now.
        let dir = store.entry_path(&digest)?;
        Ok(Fetched {
            version,
            dir,
            digest,
        })
    }

    fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        self.call(
            "POST",
            "registered-models/alias",
            &[],
            Some(&json!({"name": name, "alias": alias, "version": version})),
            &version_not_found(name, version),
        )
        .map(drop)
    }

    fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        // MLflow deletes a missing alias without complaint; say so instead.
        self.resolve(&ModelRef {
            name: name.into(),
            selector: Selector::Alias(alias.into()),
        })?;
        self.call(
            "DELETE",
            "registered-models/alias",
            &[],
            Some(&json!({"name": name, "alias": alias})),
            &|m| {
                if mentions_model_missing(m) {
                    Error::ModelNotFound(name.into())
                } else {
                    Error::AliasNotFound {
                        name: name.into(),
                        alias: alias.into(),
                    }
                }
            },
        )
        .map(drop)
    }

    fn set_tag(&self, name: &str, version: &str, key: &str, value: &str) -> Result<()> {
        self.call(
            "POST",
            "model-versions/set-tag",
            &[],
            Some(&json!({"name": name, "version": version, "key": key, "value": value})),
            &version_not_found(name, version),
        )
        .map(drop)
    }

    fn delete_tag(&self, name: &str, version: &str, key: &str) -> Result<()> {
        self.call(
            "DELETE",
            "model-versions/delete-tag",
            &[],
            Some(&json!({"name": name, "version": version, "key": key})),
            &version_not_found(name, version),
        )
        .map(drop)
    }
}

impl MlflowRegistry {
    pub(super) fn version_from(
        &self,
        v: Value,
        field: &str,
        api_path: &str,
    ) -> Result<ModelVersion> {
        let mv: MvJson = serde_json::from_value(v[field].clone())
            .map_err(|e| self.bad_answer(api_path, &format!("no {field} ({e})")))?;
        Ok(mv.into_version())
    }
}
