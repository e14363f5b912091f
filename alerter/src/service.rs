//! The alerter as the binary and the API see it: rules -> dispatcher -> notifiers.
