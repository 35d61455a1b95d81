//! Files: decoding any audio file as a stream, writing stems that appear atomically, and a whole
//! file through the separator. The only part of the engine that touches the file system for
//! audio; imports `signal` and `search`.

pub mod audio_file;
pub mod separate_file;
