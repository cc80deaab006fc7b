/** Which voice a request uses, and the checks on audio files before they are uploaded. */

export type VoiceMode = 'default' | 'saved' | 'prompt';

export interface VoiceChoice {
  mode: VoiceMode;
  /** A saved voice's id (mode 'saved'). */
  savedId: string;
  /** A one-off audio prompt (mode 'prompt'). */
  promptFile: File | null;
}

export const DEFAULT_VOICE: VoiceChoice = { mode: 'default', savedId: '', promptFile: null };

export const AUDIO_ACCEPT = 'audio/*,.wav,.mp3,.flac,.ogg,.opus,.m4a,.aac,.webm';
/** The worker's default upload limit (MAX_UPLOAD_BYTES). */
export const MAX_AUDIO_BYTES = 10 * 1024 * 1024;

export function checkAudioFile(file: Blob): string | null {
  if (file.size === 0) return 'That file is empty.';
  if (file.size > MAX_AUDIO_BYTES) {
    return `That file is ${(file.size / 1024 / 1024).toFixed(1)} MB; at most 10 MB is accepted.`;
  }
  return null;
}
