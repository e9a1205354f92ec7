//! `skiff up --apply PATH`: server-side apply of YAML manifests, like
//! `kubectl apply --server-side -f PATH`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use serde::Deserialize;

/// The YAML files at `path`: the file itself, or the `.yaml`/`.yml` files of a
/// directory in name order.
pub fn manifest_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses every YAML document of `text` (empty documents skipped).
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        objects.push(serde_yaml::from_value(value)?);
    }
    Ok(objects)
}

/// Applies every object found at `path`, printing one line per object.
pub async fn apply_path(client: &kube::Client, path: &Path) -> anyhow::Result<()> {
    let discovery = Discovery::new(client.clone()).run().await?;
    for file in manifest_files(path)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for obj in parse_documents(&text).with_context(|| format!("parsing {}", file.display()))? {
            let types = obj
                .types
                .clone()
                .with_context(|| format!("{}: an object has no apiVersion/kind", file.display()))?;
            let gvk = kube::api::GroupVersionKind::try_from(&types)?;
            let (resource, caps) = discovery
                .resolve_gvk(&gvk)
                .with_context(|| format!("the server has no resource for {}", types.kind))?;
            let name = obj
                .metadata
                .name
                .clone()
                .context("an object has no metadata.name")?;
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => {
                    let ns = obj
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into());
                    Api::namespaced_with(client.clone(), &ns, &resource)
                }
                Scope::Cluster => Api::all_with(client.clone(), &resource),
            };
            api.patch(
                &name,
                &PatchParams::apply("skiff-up").force(),
                &Patch::Apply(&obj),
            )
            .await
            .with_context(|| format!("applying {} {name}", resource.kind))?;
            println!("skiff: applied {}/{name}", resource.plural);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_skips_empty_documents() -> anyhow::Result<()> {
        let objs = parse_documents(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n",
        )?;
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].metadata.name.as_deref(), Some("b"));
        Ok(())
    }

    #[test]
    fn directories_yield_yaml_files_in_order() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("b.yaml"), "")?;
        std::fs::write(dir.path().join("a.yml"), "")?;
        std::fs::write(dir.path().join("c.txt"), "")?;
        let files = manifest_files(dir.path())?;
        let names: Vec<_> = files
            .iter()
            .filter_map(|p| p.file_name()?.to_str())
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml"]);
        Ok(())
    }
}
