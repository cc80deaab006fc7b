/**
 * The languages a request may ask for: what the server's model speaks (its /health lists them
 * as ISO 639-1 codes), their names, and a short sample text in each, so a person can hear a
 * language without having to write in it.
 */
import type { HealthInfo } from './api';

/** The server's default, and the only language of the English models. */
export const DEFAULT_LANGUAGE = 'en';
/** Not known (yet): no choice to offer. */
export const NO_LANGUAGES: readonly string[] = [];

export interface LanguageInfo {
  /** In English, for sorting and for people who do not read the script. */
  name: string;
  /** In the language itself. */
  native: string;
  /** Written right to left (the text box follows). */
  rtl?: boolean;
  /** Two short sentences, so the split between sentences is heard too (English: the demos'). */
  sample?: string;
}

/** Chatterbox's multilingual model's 23 languages. */
export const LANGUAGES: Readonly<Record<string, LanguageInfo>> = {
  ar: {
    name: 'Arabic',
    native: 'العربية',
    rtl: true,
    sample: 'مرحبًا! الطقس جميل اليوم، فلنذهب في نزهة في الحديقة.',
  },
  da: {
    name: 'Danish',
    native: 'Dansk',
    sample: 'Hej! Vejret er dejligt i dag, så lad os gå en tur i parken.',
  },
  de: {
    name: 'German',
    native: 'Deutsch',
    sample: 'Hallo! Das Wetter ist heute herrlich, also lass uns im Park spazieren gehen.',
  },
  el: {
    name: 'Greek',
    native: 'Ελληνικά',
    sample: 'Γεια σου! Ο καιρός είναι υπέροχος σήμερα, ας πάμε μια βόλτα στο πάρκο.',
  },
  en: { name: 'English', native: 'English' },
  es: {
    name: 'Spanish',
    native: 'Español',
    sample: '¡Hola! Hoy hace un tiempo estupendo, así que vamos a dar un paseo por el parque.',
  },
  fi: {
    name: 'Finnish',
    native: 'Suomi',
    sample: 'Hei! Tänään on ihana sää, joten lähdetään kävelylle puistoon.',
  },
  fr: {
    name: 'French',
    native: 'Français',
    sample: 'Bonjour ! Il fait beau aujourd’hui, alors allons nous promener au parc.',
  },
  he: {
    name: 'Hebrew',
    native: 'עברית',
    rtl: true,
    sample: 'שלום! מזג האוויר נפלא היום, אז בואו נצא לטייל בפארק.',
  },
  hi: {
    name: 'Hindi',
    native: 'हिन्दी',
    sample: 'नमस्ते! आज मौसम बहुत सुहाना है। चलिए, पार्क में टहलने चलते हैं।',
  },
  it: {
    name: 'Italian',
    native: 'Italiano',
    sample: 'Ciao! Oggi il tempo è splendido, quindi andiamo a fare una passeggiata al parco.',
  },
  ja: {
    name: 'Japanese',
    native: '日本語',
    sample: 'こんにちは！今日はとてもいい天気ですね。公園を散歩しましょう。',
  },
  ko: {
    name: 'Korean',
    native: '한국어',
    sample: '안녕하세요! 오늘 날씨가 정말 좋네요. 공원에 산책하러 가요.',
  },
  ms: {
    name: 'Malay',
    native: 'Bahasa Melayu',
    sample: 'Helo! Cuaca sangat indah hari ini, jadi mari kita bersiar-siar di taman.',
  },
  nl: {
    name: 'Dutch',
    native: 'Nederlands',
    sample: 'Hallo! Het is vandaag prachtig weer, dus laten we een wandeling maken in het park.',
  },
  no: {
    name: 'Norwegian',
    native: 'Norsk',
    sample: 'Hei! Været er nydelig i dag, så la oss gå en tur i parken.',
  },
  pl: {
    name: 'Polish',
    native: 'Polski',
    sample: 'Cześć! Dziś jest piękna pogoda, więc chodźmy na spacer do parku.',
  },
  pt: {
    name: 'Portuguese',
    native: 'Português',
    sample: 'Olá! O tempo está ótimo hoje, então vamos passear no parque.',
  },
  ru: {
    name: 'Russian',
    native: 'Русский',
    sample: 'Привет! Сегодня прекрасная погода, давай прогуляемся в парке.',
  },
  sv: {
    name: 'Swedish',
    native: 'Svenska',
    sample: 'Hej! Vädret är underbart i dag, så vi tar en promenad i parken.',
  },
  sw: {
    name: 'Swahili',
    native: 'Kiswahili',
    sample: 'Habari! Hali ya hewa ni nzuri leo, kwa hiyo twende tukatembee bustanini.',
  },
  tr: {
    name: 'Turkish',
    native: 'Türkçe',
    sample: 'Merhaba! Bugün hava çok güzel, hadi parkta yürüyüşe çıkalım.',
  },
  zh: {
    name: 'Chinese',
    native: '中文',
    sample: '你好！今天天气真好，我们去公园散步吧。',
  },
};

/**
 * The languages a /health answer lists ([] when it lists none: a model still loading, or a
 * server that does not say), lower case, without duplicates.
 */
export function languagesFromHealth(info: HealthInfo): string[] {
  const listed = info.languages;
  if (!Array.isArray(listed)) return [];
  const codes = listed
    .filter((code): code is string => typeof code === 'string' && code.trim() !== '')
    .map((code) => code.trim().toLowerCase());
  return [...new Set(codes)];
}

/** Whether there is a language to choose: the model speaks more than English. */
export function canChooseLanguage(languages: readonly string[]): boolean {
  return languages.length > 1;
}

/** The language to send: the chosen one if the model speaks it, else the default. */
export function effectiveLanguage(chosen: string, languages: readonly string[]): string {
  return languages.includes(chosen) ? chosen : DEFAULT_LANGUAGE;
}

/** A picker's label: "Deutsch (German)"; a code the table does not know, as itself. */
export function languageLabel(code: string): string {
  const info = LANGUAGES[code];
  if (!info) return code;
  return info.native === info.name ? info.name : `${info.native} (${info.name})`;
}

/** The picker's options, English first, then by English name. */
export function languageOptions(
  languages: readonly string[],
): Array<{ code: string; label: string }> {
  const name = (code: string): string => LANGUAGES[code]?.name ?? code;
  return [...languages]
    .sort((a, b) => {
      if (a === DEFAULT_LANGUAGE || b === DEFAULT_LANGUAGE) return a === DEFAULT_LANGUAGE ? -1 : 1;
      return name(a).localeCompare(name(b), 'en');
    })
    .map((code) => ({ code, label: languageLabel(code) }));
}

/** The sample text for a language; English's is the demo's own (`english`). */
export function sampleText(code: string, english: string): string | undefined {
  return code === DEFAULT_LANGUAGE ? english : LANGUAGES[code]?.sample;
}

/**
 * The text after the language changes from `from` to `to`: the new language's sample when
 * the text is still the old one's (or empty), else what the person wrote, untouched.
 */
export function textForLanguage(
  current: string,
  from: string,
  to: string,
  english: string,
): string {
  const untouched = current.trim() === '' || current === sampleText(from, english);
  return untouched ? (sampleText(to, english) ?? current) : current;
}

/** The text box's direction for a language. */
export function textDirection(code: string): 'rtl' | 'ltr' {
  return LANGUAGES[code]?.rtl ? 'rtl' : 'ltr';
}
