//! The lab database image and backup file formats
