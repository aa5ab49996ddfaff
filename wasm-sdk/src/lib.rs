//! The SDK for sluice policy modules.
