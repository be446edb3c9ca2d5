//! Where an upload copies each tag: from the buildset registry (or the
//! local daemon) to the target registry under its temporary tag.
//!
//! With `docker_registry` unset the target is Docker Hub. The target
//! repository, and the local image the daemon pushes, carry the name the
//! build gave it (`<docker_registry>/<repository>`); in the buildset
//! registry it sits under its own `repository` with the naming rule every
//! part shares ([`crate::zuul::buildset_repository`]).

use crate::oci::{Reference, Tag};
use crate::zuul::{buildset_repository, full_repository, temporary_tag, ContainerImage};

/// One tag of one image to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagUpload {
    /// The tag the image will finally carry (`latest`).
    pub tag: String,
    /// The image name the build tagged locally (`org/img:latest`).
    pub local: String,
    /// Where the build pushed it in the buildset registry, if there is one.
    pub source: Option<Reference>,
    /// Where it goes: the target registry, under the temporary tag (or the
    /// final tag, for an upload that is not promoted later).
    pub target: Reference,
}

/// Why an image cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// A name that does not make a reference.
    #[error("docker_images[{index}]: {problem}")]
    Invalid {
        /// Position in `docker_images`.
        index: usize,
        /// What is wrong.
        problem: String,
    },
}

/// Where each image is published (`<docker_registry>/<repository>`), in
/// order, without a tag.
pub fn image_references(
    images: &[ContainerImage],
    docker_registry: Option<&str>,
) -> Result<Vec<Reference>, TargetError> {
    images
        .iter()
        .enumerate()
        .map(|(index, image)| {
            full_repository(&image.repository, docker_registry)
                .parse()
                .map_err(|e| TargetError::Invalid {
                    index,
                    problem: format!("{e}"),
                })
        })
        .collect()
}

/// Every tag upload of `images`, in order: under the temporary tag for a
/// later promote, or with `promote` false (a release pipeline) under the
/// final tag itself.
pub fn uploads(
    images: &[ContainerImage],
    docker_registry: Option<&str>,
    buildset_authority: Option<&str>,
    change: Option<&str>,
    pipeline: &str,
    promote: bool,
) -> Result<Vec<TagUpload>, TargetError> {
    let mut all = Vec::new();
    let bases = image_references(images, docker_registry)?;
    for (index, (image, base)) in images.iter().zip(bases).enumerate() {
        let invalid = |problem: String| TargetError::Invalid { index, problem };
        let full = full_repository(&image.repository, docker_registry);
        for tag in &image.tags {
            let published: Tag = if promote {
                temporary_tag(change, pipeline, tag)
            } else {
                tag.clone()
            }
            .parse()
            .map_err(|e| invalid(format!("{e}")))?;
            let source = match buildset_authority {
                Some(authority) => Some(
                    format!(
                        "{authority}/{}:{tag}",
                        buildset_repository(&image.repository)
                    )
                    .parse::<Reference>()
                    .map_err(|e| invalid(format!("{e}")))?,
                ),
                None => None,
            };
            all.push(TagUpload {
                tag: tag.clone(),
                local: format!("{full}:{tag}"),
                source,
                target: base.with_tag(published),
            });
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(repository: &str) -> ContainerImage {
        serde_json::from_value(serde_json::json!({
            "repository": repository, "tags": ["latest", "v1"]
        }))
        .unwrap()
    }

    #[test]
    fn docker_hub_by_default() {
        let all = uploads(
            &[image("org/app")],
            None,
            Some("[::1]:5000"),
            Some("42"),
            "gate",
            true,
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].target.registry, "docker.io");
        assert_eq!(all[0].target.api_authority(), "registry-1.docker.io");
        assert_eq!(all[0].target.repository.as_str(), "org/app");
        assert_eq!(all[1].target.tag.as_ref().unwrap().as_str(), "change_42_v1");
        let source = all[0].source.as_ref().unwrap();
        assert_eq!(source.registry, "[::1]:5000");
        assert_eq!(source.repository.as_str(), "org/app");
        assert_eq!(all[0].local, "org/app:latest");
    }

    #[test]
    fn other_registries_and_pipelines() {
        let all = uploads(
            &[image("org/app")],
            Some("quay.io"),
            Some("127.0.0.1:5000"),
            None,
            "periodic",
            true,
        )
        .unwrap();
        assert_eq!(all[0].target.registry, "quay.io");
        assert_eq!(
            all[0].target.tag.as_ref().unwrap().as_str(),
            "periodic_latest"
        );
        assert_eq!(
            all[0].source.as_ref().unwrap().to_string(),
            "127.0.0.1:5000/org/app:latest"
        );
        assert_eq!(all[0].local, "quay.io/org/app:latest");
        let none = uploads(&[image("org/app")], None, None, Some("1"), "gate", true).unwrap();
        assert_eq!(none[0].source, None);
        let release =
            uploads(&[image("org/app")], None, None, Some("1"), "release", false).unwrap();
        assert_eq!(release[1].target.to_string(), "docker.io/org/app:v1");
    }
}
