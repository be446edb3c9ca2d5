//! All integration tests, in one test binary. Each file under `tests/`
//! covers one part; `support/` starts the real services they talk to.

mod support;

mod distribution_fixture;

mod publish_support;

mod build_docker_image;
