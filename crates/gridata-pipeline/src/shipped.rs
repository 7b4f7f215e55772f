//! The pipelines Gridata ships (`pipelines/` in the repository), embedded
//! so that `gridata init` can install them into a home.

/// File name and text of each shipped pipeline, in the order a day's
/// data is processed.
pub const SHIPPED: [(&str, &str); 5] = [
    (
        "ecommerce_customers.yaml",
        include_str!("../../../pipelines/ecommerce_customers.yaml"),
    ),
    (
        "ecommerce_products.yaml",
        include_str!("../../../pipelines/ecommerce_products.yaml"),
    ),
    (
        "ecommerce_clickstream.yaml",
        include_str!("../../../pipelines/ecommerce_clickstream.yaml"),
    ),
    (
        "ecommerce_orders.yaml",
        include_str!("../../../pipelines/ecommerce_orders.yaml"),
    ),
    (
        "ecommerce_customer_360.yaml",
        include_str!("../../../pipelines/ecommerce_customer_360.yaml"),
    ),
];

/// Write the shipped pipelines into `dir`, keeping files that exist.
/// Returns the files written.
pub fn install(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, text) in SHIPPED {
        let p = dir.join(name);
        if !p.exists() {
            std::fs::write(&p, text)?;
            written.push(p);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_pipeline_is_valid() {
        for (name, text) in SHIPPED {
            if let Err(e) = crate::load_str(std::path::Path::new(name), text) {
                panic!("{e}");
            }
        }
    }

    #[test]
    fn the_json_schema_is_committed() {
        // The checkout being tested: a build reused from another clone
        // has that clone's path compiled in.
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test");
        let path = format!("{dir}/../../docs/pipeline.schema.json");
        let path = path.as_str();
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        if committed != crate::json_schema() {
            if std::env::var_os("GRIDATA_UPDATE_SCHEMA").is_some() {
                std::fs::write(path, crate::json_schema()).unwrap();
                return;
            }
            panic!(
                "docs/pipeline.schema.json is out of date: run \
                 GRIDATA_UPDATE_SCHEMA=1 cargo test -p gridata-pipeline the_json_schema"
            );
        }
    }
}
