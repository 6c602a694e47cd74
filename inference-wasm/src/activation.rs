//! The hidden activations, defined once: the forward pass here, every training engine (the
//! fused CPU step and candle's graph) and the ONNX export all use these definitions.

use crate::spec::Activation;

pub use kernels::LEAKY_RELU_SLOPE;

impl Activation {
    /// Every activation, for tests and option lists.
    pub const ALL: [Activation; 5] =
        [Activation::Relu, Activation::Gelu, Activation::Tanh, Activation::LeakyRelu, Activation::Sigmoid];
    /// The JSON names, in the order of [`Activation::ALL`].
    pub const NAMES: [&str; 5] = ["relu", "gelu", "tanh", "leaky_relu", "sigmoid"];

    /// The snake_case name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::Tanh => "tanh",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Sigmoid => "sigmoid",
        }
    }

    /// f(z).
    #[inline]
    pub fn apply(self, z: f32) -> f32 {
        match self {
            Activation::Relu => kernels::relu(z),
            Activation::LeakyRelu => kernels::leaky_relu(z),
            Activation::Tanh => kernels::tanh(z),
            Activation::Sigmoid => kernels::sigmoid(z),
            Activation::Gelu => kernels::gelu(z),
        }
    }

    /// f′(z), as autograd computes it (ReLU's derivative at 0 is 0).
    #[inline]
    pub fn derivative(self, z: f32) -> f32 {
        match self {
            Activation::Relu => f32::from(u8::from(z > 0.0)),
            Activation::LeakyRelu => {
                if z > 0.0 {
                    1.0
                } else {
                    LEAKY_RELU_SLOPE
                }
            }
            Activation::Tanh => 1.0 - kernels::tanh(z).powi(2),
            Activation::Sigmoid => {
                let s = kernels::sigmoid(z);
                s * (1.0 - s)
            }
            Activation::Gelu => {
                let cdf = 0.5 * (1.0 + kernels::math::erf(z * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = kernels::math::exp(-0.5 * z * z) / (2.0 * std::f32::consts::PI).sqrt();
                cdf + z * pdf
            }
        }
    }

    /// Apply in place to a slice (in the kernels crate, optimised for speed on every build).
    pub fn apply_slice(self, y: &mut [f32]) {
        match self {
            Activation::Relu => kernels::relu_in_place(y),
            Activation::LeakyRelu => kernels::leaky_relu_in_place(y),
            Activation::Tanh => kernels::tanh_in_place(y),
            Activation::Sigmoid => kernels::sigmoid_in_place(y),
            Activation::Gelu => kernels::gelu_in_place(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_erf_form() {
        let mut y = [-1.0f32, 0.0, 1.0, 2.5];
        Activation::Gelu.apply_slice(&mut y);
        // 0.5·x·(1 + erf(x/√2)), from Python's math.erf
        let expect = [-0.158_655_26f32, 0.0, 0.841_344_7, 2.484_475_8];
        for (a, b) in y.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for act in Activation::ALL {
            for z in [-2.3f32, -0.7, 0.4, 1.9] {
                let h = 1e-3;
                let numeric = (act.apply(z + h) - act.apply(z - h)) / (2.0 * h);
                assert!(
                    (numeric - act.derivative(z)).abs() < 2e-3,
                    "{act:?} at {z}: {numeric} vs {}",
                    act.derivative(z)
                );
            }
        }
        assert_eq!(Activation::LeakyRelu.apply(-2.0), -2.0 * LEAKY_RELU_SLOPE);
    }
}
