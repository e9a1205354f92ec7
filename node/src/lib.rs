//! Skiff node agent: kubelet, pod network and service proxy.
