import { describe, expect, it } from 'vitest';
import {
  DEFAULT_LANGUAGE,
  LANGUAGES,
  canChooseLanguage,
  effectiveLanguage,
  languageLabel,
  languageOptions,
  languagesFromHealth,
  sampleText,
  textDirection,
  textForLanguage,
} from '../../src/lib/languages';
import { planSentences, splitWords } from '../../src/lib/textStream';

// What the multilingual model speaks, as its /health lists it.
const MULTILINGUAL = [
  'ar', 'da', 'de', 'el', 'en', 'es', 'fi', 'fr', 'he', 'hi', 'it', 'ja',
  'ko', 'ms', 'nl', 'no', 'pl', 'pt', 'ru', 'sv', 'sw', 'tr', 'zh',
]; // prettier-ignore

const ENGLISH_TEXT = 'Hello there. How are you?';

describe('the languages /health lists', () => {
  it('reads the list, lower case, without duplicates or junk', () => {
    expect(languagesFromHealth({ status: 'ready', languages: ['en', 'FR', 'fr', 3, ''] })).toEqual([
      'en',
      'fr',
    ]);
  });

  it('is empty when the server does not say (loading, the balancer, an older worker)', () => {
    expect(languagesFromHealth({ status: 'loading' })).toEqual([]);
    expect(languagesFromHealth({ status: 'ok', languages: 'en' })).toEqual([]);
  });

  it('offers a choice only when the model speaks more than English', () => {
    expect(canChooseLanguage([])).toBe(false);
    expect(canChooseLanguage(['en'])).toBe(false);
    expect(canChooseLanguage(MULTILINGUAL)).toBe(true);
  });

  it('sends the chosen language only while the model speaks it', () => {
    expect(effectiveLanguage('ja', MULTILINGUAL)).toBe('ja');
    expect(effectiveLanguage('ja', ['en'])).toBe(DEFAULT_LANGUAGE);
  });
});

describe('the picker', () => {
  it('has a name and, but for English, a sample for each of the 23 languages', () => {
    for (const code of MULTILINGUAL) {
      expect(LANGUAGES[code]?.name).toBeTruthy();
      if (code !== 'en') expect(LANGUAGES[code]?.sample).toBeTruthy();
    }
    expect(Object.keys(LANGUAGES).sort()).toEqual(MULTILINGUAL);
  });

  it('lists English first, then by English name; unknown codes as themselves', () => {
    const options = languageOptions(['zh', 'xx', 'de', 'en', 'ar']);
    expect(options.map((o) => o.code)).toEqual(['en', 'ar', 'zh', 'de', 'xx']);
    expect(languageLabel('de')).toBe('Deutsch (German)');
    expect(languageLabel('en')).toBe('English');
    expect(languageLabel('xx')).toBe('xx');
  });

  it('swaps the sample text when the language changes, never what a person wrote', () => {
    const german = sampleText('de', ENGLISH_TEXT);
    expect(textForLanguage(ENGLISH_TEXT, 'en', 'de', ENGLISH_TEXT)).toBe(german);
    expect(textForLanguage(german ?? '', 'de', 'en', ENGLISH_TEXT)).toBe(ENGLISH_TEXT);
    expect(textForLanguage('  ', 'de', 'ja', ENGLISH_TEXT)).toBe(sampleText('ja', ENGLISH_TEXT));
    expect(textForLanguage('Mein eigener Text.', 'de', 'fr', ENGLISH_TEXT)).toBe(
      'Mein eigener Text.',
    );
    expect(textForLanguage(ENGLISH_TEXT, 'en', 'xx', ENGLISH_TEXT)).toBe(ENGLISH_TEXT);
  });

  it('writes Arabic and Hebrew right to left', () => {
    expect(textDirection('ar')).toBe('rtl');
    expect(textDirection('he')).toBe('rtl');
    expect(textDirection('zh')).toBe('ltr');
  });

  it('has samples of two sentences, split where the server splits them', () => {
    for (const code of MULTILINGUAL.filter((c) => c !== 'en')) {
      const sample = sampleText(code, ENGLISH_TEXT) ?? '';
      expect(planSentences(splitWords(sample)).length, code).toBeGreaterThanOrEqual(2);
    }
  });
});
