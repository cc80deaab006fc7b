/**
 * The language to speak, from those the server's model speaks (its /health). Not shown when
 * there is no choice: an English-only model, or a server that does not say.
 */
import { canChooseLanguage, languageOptions } from '../lib/languages';

export interface LanguagePickerProps {
  id: string;
  languages: readonly string[];
  value: string;
  onChange: (code: string) => void;
  disabled?: boolean;
  error?: string | undefined;
}

export function LanguagePicker({
  id,
  languages,
  value,
  onChange,
  disabled = false,
  error,
}: LanguagePickerProps) {
  if (!canChooseLanguage(languages)) return null;
  return (
    <div className={`field${error ? ' has-error' : ''}`}>
      <label htmlFor={id}>Language</label>
      <select
        id={id}
        value={value}
        disabled={disabled}
        onChange={(e) => {
          onChange(e.target.value);
        }}
        aria-describedby={`${id}-hint`}
        aria-invalid={error ? true : undefined}
      >
        {languageOptions(languages).map(({ code, label }) => (
          <option key={code} value={code}>
            {label}
          </option>
        ))}
      </select>
      <p id={`${id}-hint`} className="hint">
        The language of the text. Changing it puts a sample in that language in the text box, unless
        you have written your own.
      </p>
      {error && <p className="field-error">{error}</p>}
    </div>
  );
}
