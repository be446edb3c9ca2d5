//! Shared test support: real services (registries, docker) started for tests.
#![allow(dead_code)]
