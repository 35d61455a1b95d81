//! Files: decoding any audio file as a stream, writing stems in WAV or FLAC that appear
//! atomically, and a whole file through the separator. The only part of the engine that touches
//! the file system for audio; imports `signal` and `search`.

pub mod audio_file;
pub mod decode_damage;
pub mod flac_stream_writer;
pub mod mp4_edit_list;
pub mod quantizer;
pub mod separate_file;
pub mod stem_encoder;
pub mod stem_format;
pub mod stem_writers;
