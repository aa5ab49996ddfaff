//! The node datapath on a lab node, through the library (what `sluice apply --node-config`
//! does from files), so `sluice demo` can load it without shelling out to its own binary.
//!
//! The configuration is passed in rather than read from the lab's files, so a caller can try
//! another masquerade setting (an ip-masq-agent file in the lab's directory) on a running lab
//! as a new generation; the masquerade sources it names are read relative to the lab's
//! directory, as the node would read them next to its configuration file.

use super::{Lab, LabError};
use sluice_compiler::compile::{self, CompileOptions};
use sluice_compiler::diag::render_plain;
use sluice_compiler::node::NodeConfig;
use sluice_compiler::source::SourceMap;
use sluice_loader::generation::{self, GenerationReport, LoadOptions};

/// Compiles the node datapath of `config` (no policy: every flow allowed) for the lab's
/// inventory and applies it as the next generation at `load`.
pub fn apply_node(
    lab: &Lab,
    config: &NodeConfig,
    load: &LoadOptions,
) -> Result<GenerationReport, LabError> {
    let fail = |message: String| LabError::Apply {
        node: config.name.clone(),
        message,
    };
    let mut sources = SourceMap::new();
    let (masquerade, diags) = sluice_compiler::masq::load(config, &lab.dir, &mut sources);
    if diags.has_errors() {
        return Err(fail(render_plain(&diags, &sources)));
    }
    let checked = compile::check_documents(&[], Some(&lab.inventory));
    if checked.diags.has_errors() {
        return Err(fail(render_plain(&checked.diags, &sources)));
    }
    let opts = CompileOptions {
        node: Some(config.name.clone()),
        datapath: Some(config.clone()),
        masquerade,
        ..CompileOptions::default()
    };
    let compiled = compile::compile(
        &checked.ir,
        &lab.inventory,
        &sources,
        &[],
        &opts,
        &mut |_| {},
    )
    .map_err(|e| fail(e.to_string()))?;
    generation::apply_bundle(&compiled.bundle, load).map_err(|e| fail(e.to_string()))
}
