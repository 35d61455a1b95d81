//! What set-up installs: the files taken out of wheels on the Python package index, each pinned
//! by the wheel's exact version and the file's sha256 (Linux x86_64 wheels).
//!
//! The CPU set is ONNX Runtime's CPU build (the `onnxruntime` wheel), installed in
//! `<data dir>/runtime/`. The GPU set (`setup --gpu`) is the GPU build of the same release (the
//! `onnxruntime-gpu` wheel, built with CUDA 13.0) and the CUDA 13 / cuDNN 9 libraries its CUDA
//! provider needs, from NVIDIA's wheels, installed in `<data dir>/runtime/gpu/`: the folder name
//! and the preloaded libraries must agree with `engine::priors::gpu_runtime`. The NVIDIA driver
//! (`libcuda.so.1`) is the user's and is never installed.
//!
//! Which libraries the CUDA provider needs was read from `libonnxruntime_providers_cuda.so`:
//! linked (`readelf -d`) are libcudart.so.13, libcublas.so.13, libcublasLt.so.13,
//! libcurand.so.10 and libcuda.so.1; loaded by name at run time are libcudnn.so.9,
//! libcufft.so.12 and libnvrtc.so.13. Those load in turn the cuDNN sub-libraries, nvrtc's
//! builtins and (cuFFT) libnvJitLink.so.13, all found beside them through their `$ORIGIN`
//! run path. The onnxruntime-gpu wheel asks for `nvidia-cuda-runtime~=13.0`,
//! `nvidia-cuda-nvrtc~=13.0`, `nvidia-cufft~=12.0`, `nvidia-curand~=10.0` and
//! `nvidia-cudnn-cu13~=9.0` (cuDNN brings `nvidia-cublas`, cuFFT `nvidia-nvjitlink`); the pins
//! below are the newest releases numbered for CUDA 13.0 (the toolkit the provider was compiled
//! with, `release 13.0` in its binary, so a driver for CUDA 13.0 or newer runs them) and the
//! newest cuDNN 9 for CUDA 13.

/// The ONNX Runtime release the engine is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";

/// One file taken out of a wheel, with the hash it must have.
pub struct RuntimeFile {
    /// Path inside the wheel.
    pub member: &'static str,
    /// Path in the install folder (a licence goes to `licenses/`).
    pub name: &'static str,
    /// sha256 of the file.
    pub sha256: &'static str,
}

/// A wheel pinned to one version, and the files set-up takes out of it.
pub struct Wheel {
    /// The pip requirement, pinned exactly (`name==version`).
    pub requirement: &'static str,
    /// The files installed from it.
    pub files: &'static [RuntimeFile],
}

/// A set of wheels installed together into one folder.
pub struct RuntimeSet {
    /// What the set is, for set-up's messages.
    pub label: &'static str,
    /// The folder below `<data dir>/runtime/` it goes to (empty: `runtime/` itself).
    pub subdir: &'static str,
    /// The wheels, each with its files.
    pub wheels: &'static [Wheel],
}

impl RuntimeSet {
    /// Every file of the set, wheel by wheel.
    pub fn files(&self) -> impl Iterator<Item = &'static RuntimeFile> {
        self.wheels.iter().flat_map(|wheel| wheel.files.iter())
    }
}

/// The CPU build of ONNX Runtime (`onnxruntime==1.31.1`, manylinux_2_28).
pub const CPU_LINUX_X86_64: RuntimeSet = RuntimeSet {
    label: "ONNX Runtime 1.31.1 (CPU)",
    subdir: "",
    wheels: &[Wheel {
        requirement: "onnxruntime==1.31.1",
        files: &[
            RuntimeFile {
                member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
                name: "libonnxruntime.so.1.31.1",
                sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
            },
            RuntimeFile {
                member: "onnxruntime/capi/libonnxruntime_providers_shared.so",
                name: "libonnxruntime_providers_shared.so",
                sha256: "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d",
            },
        ],
    }],
};

/// The licence every CUDA 13 wheel below carries (the same file in each).
const CUDA_LICENSE: RuntimeFile = RuntimeFile {
    member: "nvidia_cuda_runtime-13.0.96.dist-info/licenses/License.txt",
    name: "licenses/NVIDIA-CUDA-License.txt",
    sha256: "ad6f5853fba0ca0d159d0f58d49ae49830c2f8c93f7a92648b9ce90adb4c6ccd",
};

/// The GPU build of ONNX Runtime and the CUDA / cuDNN libraries of its CUDA provider:
/// 2.48 GB installed, 1.6 GB of wheels fetched.
pub const GPU_LINUX_X86_64: RuntimeSet = RuntimeSet {
    label: "ONNX Runtime 1.31.1 (GPU: CUDA 13, cuDNN 9)",
    subdir: "gpu",
    wheels: &[
        Wheel {
            requirement: "onnxruntime-gpu==1.31.1",
            files: &[
                RuntimeFile {
                    member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
                    name: "libonnxruntime.so.1.31.1",
                    sha256: "5104254339ecadae808da771bd0b63b240f0dbd466514234905e54372435c303",
                },
                RuntimeFile {
                    member: "onnxruntime/capi/libonnxruntime_providers_shared.so",
                    name: "libonnxruntime_providers_shared.so",
                    sha256: "086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d",
                },
                RuntimeFile {
                    member: "onnxruntime/capi/libonnxruntime_providers_cuda.so",
                    name: "libonnxruntime_providers_cuda.so",
                    sha256: "d5290158115fa5569a3fe8f1f4037ee9b0e86658a96e52f852bbb7039aa88137",
                },
                RuntimeFile {
                    member: "onnxruntime/LICENSE",
                    name: "licenses/onnxruntime-LICENSE.txt",
                    sha256: "2f07c72751aed99790b8a4869cf2311df85a860b22ded05fa22803587a48922c",
                },
                RuntimeFile {
                    member: "onnxruntime/ThirdPartyNotices.txt",
                    name: "licenses/onnxruntime-ThirdPartyNotices.txt",
                    sha256: "143764b952fdb1a7c69ce653bfba74a7744d6a8a573bfb73e235fba356c83de3",
                },
            ],
        },
        Wheel {
            requirement: "nvidia-cuda-runtime==13.0.96",
            files: &[
                RuntimeFile {
                    member: "nvidia/cu13/lib/libcudart.so.13",
                    name: "libcudart.so.13",
                    sha256: "96c42e418cec19054186b9429c321603cc190bf26a18104e19408117a2a817b0",
                },
                CUDA_LICENSE,
            ],
        },
        Wheel {
            requirement: "nvidia-cublas==13.0.2.14",
            files: &[
                RuntimeFile {
                    member: "nvidia/cu13/lib/libcublasLt.so.13",
                    name: "libcublasLt.so.13",
                    sha256: "4c15f403ac2a8040a3291d07f6c351b5c1f730b45f2ea41f302e415e9600655b",
                },
                RuntimeFile {
                    member: "nvidia/cu13/lib/libcublas.so.13",
                    name: "libcublas.so.13",
                    sha256: "1d5f1452af53a0b1cf36bc7d8116d2a22a5f2cffbaa8fca25a1b70360a2e8d7a",
                },
            ],
        },
        Wheel {
            requirement: "nvidia-curand==10.4.0.35",
            files: &[RuntimeFile {
                member: "nvidia/cu13/lib/libcurand.so.10",
                name: "libcurand.so.10",
                sha256: "b53732a66b302b11926e00f762e2c2ba67058347ff93cf4ae709de45e93e06da",
            }],
        },
        Wheel {
            requirement: "nvidia-cufft==12.0.0.61",
            files: &[RuntimeFile {
                member: "nvidia/cu13/lib/libcufft.so.12",
                name: "libcufft.so.12",
                sha256: "0933f68bb7e3bf90f86d70bc87cd2f69027f7757e89e5de5e19ec33a53fd8d3a",
            }],
        },
        Wheel {
            requirement: "nvidia-nvjitlink==13.0.88",
            files: &[RuntimeFile {
                member: "nvidia/cu13/lib/libnvJitLink.so.13",
                name: "libnvJitLink.so.13",
                sha256: "931347fa77d9fd5511059e04627f122b1ee33e409f22c3273ddddbe065713a3a",
            }],
        },
        Wheel {
            requirement: "nvidia-cuda-nvrtc==13.0.88",
            files: &[
                RuntimeFile {
                    member: "nvidia/cu13/lib/libnvrtc.so.13",
                    name: "libnvrtc.so.13",
                    sha256: "a49e67e8e74590f1e98de55c39c6287efd3f59e3c3797464d7bbe0fe01349b11",
                },
                RuntimeFile {
                    member: "nvidia/cu13/lib/libnvrtc-builtins.so.13.0",
                    name: "libnvrtc-builtins.so.13.0",
                    sha256: "91dcd944d01da9c0f08fff5d779db136a47f6d62bdb63bae900d2f481e92c3a2",
                },
            ],
        },
        Wheel {
            requirement: "nvidia-cudnn-cu13==9.28.1.4",
            files: &[
                RuntimeFile {
                    member: "nvidia/cudnn/lib/libcudnn.so.9",
                    name: "libcudnn.so.9",
                    sha256: "f756cabeed9b481134769fdbc0c2ae022cf52ac39aab08be26ea990a56da2efc",
                },
                RuntimeFile {
                    member: "nvidia/cudnn/lib/libcudnn_graph.so.9",
                    name: "libcudnn_graph.so.9",
                    sha256: "06c28f04f028466cf33461a7d645210146015d425a0dae6c7dc7e60c07c4d973",
                },
                RuntimeFile {
                    member: "nvidia/cudnn/lib/libcudnn_ops.so.9",
                    name: "libcudnn_ops.so.9",
                    sha256: "e849b0a7353eec5bb5c9f75d841d075d786e205d84f8fd07b092770554674e48",
                },
                RuntimeFile {
                    member: "nvidia/cudnn/lib/libcudnn_cnn.so.9",
                    name: "libcudnn_cnn.so.9",
                    sha256: "2512f47e6e33000e12be5b2e59ac71eb8f5805a548561e7637e4413d1b7cdeb7",
                },
                RuntimeFile {
                    member: "nvidia/cudnn/lib/libcudnn_adv.so.9",
                    name: "libcudnn_adv.so.9",
                    sha256: "d69ed7d8adc4524ddb6cbf5e10211e35f580d14e40924692f0cdf1b78cf23ab2",
                },
                RuntimeFile {
                    member: "nvidia/cudnn/lib/libcudnn_ext.so.9",
                    name: "libcudnn_ext.so.9",
                    sha256: "46c273e178b7733ffa5d56bd9719f378a20b94e07d2ccf23c4078e22bced0652",
                },
                RuntimeFile {
                    member: "nvidia/cudnn/lib/libcudnn_heuristic.so.9",
                    name: "libcudnn_heuristic.so.9",
                    sha256: "7738da4dd6fee9597680ff595863743b2bc4bd5b0ec3edb4e8e9d28a2b5e629d",
                },
                RuntimeFile {
                    member: "nvidia/cudnn/lib/libcudnn_engines_precompiled.so.9",
                    name: "libcudnn_engines_precompiled.so.9",
                    sha256: "51bd1d25591ae2994120aac5c5be172e31b973e0fdeba43a50647949096ee40a",
                },
                RuntimeFile {
                    member: "nvidia/cudnn/lib/libcudnn_engines_runtime_compiled.so.9",
                    name: "libcudnn_engines_runtime_compiled.so.9",
                    sha256: "738655d1b9441a752fde9b9911780635e60fe96113f2b06c1af6d70458ef5174",
                },
                RuntimeFile {
                    member: "nvidia/cudnn/lib/libcudnn_engines_tensor_ir.so.9",
                    name: "libcudnn_engines_tensor_ir.so.9",
                    sha256: "ff088c803f896fd9a92c0ab861026ff3b7ee5a4222713c3dd8221e1c843e74ec",
                },
                RuntimeFile {
                    member: "nvidia_cudnn_cu13-9.28.1.4.dist-info/licenses/License.txt",
                    name: "licenses/NVIDIA-cuDNN-License.txt",
                    sha256: "49cf79bdb35734b52fe6203013b3bd759f81e998cd32aa2c65c51db9a88c61d2",
                },
            ],
        },
    ],
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every pin is exact, every hash a sha256, and no two files share a name in one folder.
    #[test]
    fn the_sets_are_pinned_and_their_names_unique() {
        for set in [&CPU_LINUX_X86_64, &GPU_LINUX_X86_64] {
            let mut names = HashSet::new();
            for wheel in set.wheels {
                assert!(wheel.requirement.contains("=="), "{}", wheel.requirement);
            }
            for file in set.files() {
                assert_eq!(file.sha256.len(), 64, "{}", file.name);
                assert!(file.sha256.chars().all(|c| c.is_ascii_hexdigit()));
                assert!(names.insert(file.name), "{} twice in {}", file.name, set.label);
            }
            assert!(set.label.contains(ORT_VERSION));
        }
        // Both builds carry the library of the release the engine is tested with.
        let library = format!("libonnxruntime.so.{ORT_VERSION}");
        assert!(CPU_LINUX_X86_64.files().any(|f| f.name == library));
        assert!(GPU_LINUX_X86_64.files().any(|f| f.name == library));
        assert!(GPU_LINUX_X86_64
            .files()
            .any(|f| f.name == "libonnxruntime_providers_cuda.so"));
        // The driver is the user's.
        assert!(!GPU_LINUX_X86_64.files().any(|f| f.name.starts_with("libcuda.so")));
    }
}
