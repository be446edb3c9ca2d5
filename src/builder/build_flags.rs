//! The flags of a `build` command, which docker, podman and buildah share.

use std::ffi::OsString;
use std::path::Path;

use super::BuildSpec;

/// `build` arguments for `spec`, writing the image ID to `iidfile`. The
/// context path comes last.
pub fn build_args(spec: &BuildSpec, iidfile: &Path) -> Vec<OsString> {
    build_args_with(spec, &spec.tags, &[], Some(iidfile))
}

/// `build` arguments for `spec` tagged `tags` instead of its own, with
/// `extra` flags (`--platform ...`), writing the image ID to `iidfile`
/// when given.
pub fn build_args_with(
    spec: &BuildSpec,
    tags: &[String],
    extra: &[&str],
    iidfile: Option<&Path>,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["build".into(), "-f".into(), (&spec.dockerfile).into()];
    args.extend(extra.iter().map(OsString::from));
    if let Some(target) = &spec.target {
        args.extend(["--target".into(), target.into()]);
    }
    for build_arg in &spec.build_args {
        args.extend(["--build-arg".into(), build_arg.into()]);
    }
    for (key, value) in &spec.labels {
        args.extend(["--label".into(), format!("{key}={value}").into()]);
    }
    for tag in tags {
        args.extend(["--tag".into(), tag.into()]);
    }
    if let Some(iidfile) = iidfile {
        args.extend(["--iidfile".into(), iidfile.as_os_str().to_owned()]);
    }
    args.push((&spec.path).into());
    args
}

/// Read the image ID a build wrote.
pub fn read_image_id(iidfile: &Path) -> Result<String, super::BuildError> {
    std::fs::read_to_string(iidfile)
        .map(|s| s.trim().to_string())
        .map_err(|e| super::BuildError::file("reading the image ID from", iidfile, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_field_becomes_a_flag() {
        let spec = BuildSpec {
            context_dir: "/src/app".into(),
            path: ".".into(),
            dockerfile: "Dockerfile.prod".into(),
            target: Some("final".into()),
            build_args: vec!["A=1".into()],
            labels: BTreeMap::from([("org.zuul-ci.change".into(), "42".into())]),
            tags: vec!["org/app:latest".into(), "org/app:change_42_latest".into()],
            platforms: vec![],
            env: Default::default(),
        };
        let args: Vec<String> = build_args(&spec, Path::new("/tmp/iid"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            "build -f Dockerfile.prod --target final --build-arg A=1 \
             --label org.zuul-ci.change=42 --tag org/app:latest \
             --tag org/app:change_42_latest --iidfile /tmp/iid ."
        );
    }
}
