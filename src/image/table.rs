//! The `skiff image list` table: both stores in `docker images` / `crictl images` columns.

use skiff_runtimes::ImageInfo;
use skiff_runtimes::images::ImageRecord;

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `hello`, `127.0.0.1:5000/app` (familiar form, as Docker prints it).
    pub repository: String,
    /// `v1`, or `<none>` for digest references and untagged images.
    pub tag: String,
    /// Twelve hex digits of the image id (Docker's id; the wasm binary's digest).
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// `wasmtime` or `docker`: which store holds it.
    pub runtime: &'static str,
}

/// `docker.io/library/hello` → `hello`, `docker.io/me/app` → `me/app`, others unchanged.
pub fn familiar(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
}

/// Repository and tag of a reference: `host:5000/app:v1` → (`host:5000/app`, `v1`);
/// `app@sha256:..` → (`app`, `<none>`); `app` → (`app`, `<none>`).
pub fn split_reference(reference: &str) -> (String, String) {
    let reference = familiar(reference);
    if let Some((repository, _digest)) = reference.split_once('@') {
        return (repository.to_owned(), "<none>".to_owned());
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            (reference[..at].to_owned(), reference[at + 1..].to_owned())
        }
        None => (reference.to_owned(), "<none>".to_owned()),
    }
}

/// Twelve hex digits of `sha256:<hex>`.
pub fn short_id(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, hex)| hex);
    hex.chars().take(12).collect()
}

/// Sizes as Docker prints them: decimal units, three significant digits (`57.3kB`, `1.23MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let text = if unit == 0 || value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    // `1.20MB` reads as `1.2MB` in Docker (%.4g drops trailing zeros).
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text}{}", UNITS[unit])
}

/// The wasm store's references, one row each, sorted by name.
pub fn wasm_rows(records: &[ImageRecord]) -> Vec<Row> {
    let mut rows: Vec<Row> = records
        .iter()
        .map(|record| {
            let (repository, tag) = split_reference(&record.name);
            Row {
                repository,
                tag,
                id: short_id(&record.digest),
                size: record.size,
                runtime: "wasmtime",
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
    rows
}

/// Docker's images, one row per tag (`<none> <none>` for untagged ones), sorted by name.
pub fn docker_rows(images: &[ImageInfo]) -> Vec<Row> {
    let mut rows = Vec::new();
    for image in images {
        let id = short_id(&image.id);
        let names: Vec<(String, String)> = if image.tags.is_empty() {
            vec![("<none>".to_owned(), "<none>".to_owned())]
        } else {
            image.tags.iter().map(|t| split_reference(t)).collect()
        };
        for (repository, tag) in names {
            rows.push(Row {
                repository,
                tag,
                id: id.clone(),
                size: image.size,
                runtime: "docker",
            });
        }
    }
    rows.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
    rows
}

/// The table with a header, columns padded to their widest cell.
pub fn render(rows: &[Row]) -> String {
    let header = ["REPOSITORY", "TAG", "IMAGE ID", "SIZE", "RUNTIME"].map(str::to_owned);
    let body = rows.iter().map(|row| {
        [
            row.repository.clone(),
            row.tag.clone(),
            row.id.clone(),
            human_size(row.size),
            row.runtime.to_owned(),
        ]
    });
    let lines: Vec<[String; 5]> = std::iter::once(header).chain(body).collect();
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_like_docker_images() {
        let split = |r| split_reference(r);
        assert_eq!(
            split("docker.io/library/hello:latest"),
            ("hello".into(), "latest".into())
        );
        assert_eq!(split("docker.io/me/app:v2"), ("me/app".into(), "v2".into()));
        assert_eq!(
            split("127.0.0.1:5000/skiff/app:v1"),
            ("127.0.0.1:5000/skiff/app".into(), "v1".into())
        );
        assert_eq!(
            split("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "<none>".into())
        );
        assert_eq!(split("app@sha256:abcd"), ("app".into(), "<none>".into()));
    }

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(57_300), "57.3kB");
        assert_eq!(human_size(1_234_567), "1.23MB");
        assert_eq!(human_size(1_200_000), "1.2MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
    }

    #[test]
    fn both_stores_share_one_table() {
        let wasm = wasm_rows(&[ImageRecord {
            name: "docker.io/library/hello:v1".into(),
            digest: "sha256:0123456789abcdef".into(),
            size: 57_300,
        }]);
        let docker = docker_rows(&[
            ImageInfo {
                id: "sha256:fedcba9876543210".into(),
                tags: vec!["busybox:latest".into(), "127.0.0.1:5000/bb:v1".into()],
                size: 1_234_567,
            },
            ImageInfo {
                id: "sha256:aaaaaaaaaaaaaaaa".into(),
                tags: vec![],
                size: 10,
            },
        ]);
        let rows: Vec<Row> = wasm.into_iter().chain(docker).collect();
        let table = render(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        let words = |line: &str| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            words(lines[0]),
            ["REPOSITORY", "TAG", "IMAGE", "ID", "SIZE", "RUNTIME"]
        );
        assert_eq!(
            words(lines[1]),
            ["hello", "v1", "0123456789ab", "57.3kB", "wasmtime"]
        );
        assert_eq!(
            words(lines[2]),
            [
                "127.0.0.1:5000/bb",
                "v1",
                "fedcba987654",
                "1.23MB",
                "docker"
            ]
        );
        assert_eq!(
            words(lines[3]),
            ["<none>", "<none>", "aaaaaaaaaaaa", "10B", "docker"]
        );
        assert_eq!(
            words(lines[4]),
            ["busybox", "latest", "fedcba987654", "1.23MB", "docker"]
        );
        // Columns line up: every IMAGE ID starts where the header's does.
        let column = lines[0].find("IMAGE ID").expect("header");
        assert!(
            lines[1..]
                .iter()
                .all(|l| l[column..].starts_with(|c: char| c.is_ascii_hexdigit())),
            "{table}"
        );
    }
}
